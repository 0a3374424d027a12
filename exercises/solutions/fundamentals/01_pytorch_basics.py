"""Reference solutions for fundamentals/01's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def pairwise_distances(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    diff = A[:, None, :] - B[None, :, :]  # (N, 1, D) - (1, M, D) -> (N, M, D)
    return (diff**2).sum(dim=-1).sqrt()  # (N, M)


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = torch.zeros(len(y), num_classes)  # (N, C) float32
    out[torch.arange(len(y)), y] = 1.0  # row i, column y[i]
    return out


def numerical_jacobian(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    x = x.detach()
    columns = []
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step[i] = eps
        columns.append((f(x + step) - f(x - step)) / (2 * eps))  # (m,): column i of the Jacobian
    return torch.stack(columns, dim=1)  # (m, n)
