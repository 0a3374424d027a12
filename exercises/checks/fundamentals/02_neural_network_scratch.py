"""Checks for fundamentals/02 (a network from scratch): autograd and `torch.nn.functional` are the oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlkit.exercises import expect_tensor


def check_leaky_relu_grad(leaky_relu_grad) -> None:
    g = torch.Generator().manual_seed(0)
    for slope in (0.01, 0.2):
        Z = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
        F.leaky_relu(Z, slope).sum().backward()
        expect_tensor(leaky_relu_grad(Z.detach(), slope), Z.grad, f"leaky_relu_grad(Z, slope={slope})",
                      reference="autograd through F.leaky_relu")  # fmt: skip


def check_bce_with_logits(bce_with_logits) -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (64,), generator=g).to(torch.float64)
    expect_tensor(bce_with_logits(z, y), F.binary_cross_entropy_with_logits(z, y), "bce_with_logits(z, y)",
                  reference="F.binary_cross_entropy_with_logits")  # fmt: skip
    z = torch.tensor([1000.0, -1000.0, 30.0, -30.0, 0.0])  # float32, where sigmoid rounds to 0 and 1
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    what = "bce_with_logits for logits of +-1000 in float32"
    expected = F.binary_cross_entropy_with_logits(z, y)
    expect_tensor(bce_with_logits(z, y), expected, what, reference="F.binary_cross_entropy_with_logits")


def check_linear_backward(linear_backward) -> None:
    g = torch.Generator().manual_seed(2)
    X = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    dZ = torch.randn(6, 3, generator=g, dtype=torch.float64)
    (X @ W + b).backward(dZ)
    dX, dW, db = linear_backward(X.detach(), W.detach(), dZ)
    expect_tensor(dX, X.grad, "dX", reference="autograd")
    expect_tensor(dW, W.grad, "dW", reference="autograd")
    expect_tensor(db, b.grad, "db", reference="autograd")
