"""Plausible wrong answers to computer_vision/02's exercises: each must make its check fail."""

from __future__ import annotations

import torch
from torch import nn


def freeze_but_optimize_everything(model, head, lr):
    model.requires_grad_(False)
    head.requires_grad_(True)
    return torch.optim.AdamW(model.parameters(), lr=lr)  # every tensor in the optimizer


def freeze_conv_and_linear_only(model, head, lr):
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear) and module is not head:
            module.requires_grad_(False)  # BatchNorm's weight and bias stay trainable
    return torch.optim.AdamW(head.parameters(), lr=lr)


def freeze_everything(model, head, lr):
    model.requires_grad_(False)  # the head too
    return torch.optim.AdamW(head.parameters(), lr=lr)


def replace_head_by_appending(model, num_classes):
    model.classifier.append(nn.Linear(model.classifier[-1].out_features, num_classes))
    return model


def replace_whole_classifier(model, num_classes):
    model.classifier = nn.Sequential(nn.Linear(model.classifier[0].in_features, num_classes))
    return model


def lr_groups_off_by_one(blocks, head, lr, decay):
    n = len(blocks)
    groups = [{"params": list(b.parameters()), "lr": lr * decay ** (n - 1 - i)} for i, b in enumerate(blocks)]
    return [*groups, {"params": list(head.parameters()), "lr": lr}]


def lr_groups_reversed(blocks, head, lr, decay):
    groups = [{"params": list(b.parameters()), "lr": lr * decay ** (i + 1)} for i, b in enumerate(blocks)]
    return [*groups, {"params": list(head.parameters()), "lr": lr}]


WRONG = {
    "freeze_all_but_head": [freeze_but_optimize_everything, freeze_conv_and_linear_only, freeze_everything],
    "replace_head": [replace_head_by_appending, replace_whole_classifier],
    "layerwise_lr_groups": [lr_groups_off_by_one, lr_groups_reversed],
}
