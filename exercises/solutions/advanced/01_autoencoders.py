"""Reference solutions for advanced/01's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def masking_noise(x: torch.Tensor, p: float) -> torch.Tensor:
    keep = torch.rand_like(x) >= p  # each pixel dropped with probability p
    return x * keep  # a new tensor: x itself is untouched, the kept pixels are not rescaled


def denoising_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   corrupt: Callable[[torch.Tensor], torch.Tensor]) -> float:  # fmt: skip
    model.train()
    loss = F.mse_loss(model(corrupt(x)), x)  # the corrupted image in, the clean one as the target
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def reconstruction_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()  # dropout off: the score of an image must not depend on chance
    return (model(x) - x).flatten(1).pow(2).mean(dim=1)
