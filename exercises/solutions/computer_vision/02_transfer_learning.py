"""Reference solutions to computer_vision/02's exercises (transfer learning)."""

from __future__ import annotations

import torch
from torch import nn


def freeze_all_but_head(model: nn.Module, head: nn.Module, lr: float) -> torch.optim.Optimizer:
    model.requires_grad_(False)
    head.requires_grad_(True)
    return torch.optim.AdamW(head.parameters(), lr=lr)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    old = model.classifier[-1]
    model.classifier[-1] = nn.Linear(old.in_features, num_classes)
    return model


def layerwise_lr_groups(blocks: nn.ModuleList, head: nn.Module, lr: float, decay: float) -> list[dict]:
    n = len(blocks)
    groups = [
        {"params": list(block.parameters()), "lr": lr * decay ** (n - i)} for i, block in enumerate(blocks)
    ]
    return [*groups, {"params": list(head.parameters()), "lr": lr}]
