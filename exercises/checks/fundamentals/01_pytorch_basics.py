"""Checks for fundamentals/01 (tensors, broadcasting, autograd): `torch.cdist`, `F.one_hot` and autograd's
Jacobian are the oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlkit.exercises import expect, expect_tensor


def check_pairwise_distances(pairwise_distances) -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 4, generator=g, dtype=torch.float64)  # (N, D)
    B = torch.cat([torch.randn(2, 4, generator=g, dtype=torch.float64), A[:1]])  # (M, D); B[2] == A[0]
    expect_tensor(
        pairwise_distances(A, B),
        torch.cdist(A, B),
        "pairwise_distances(A (5, 4), B (3, 4))",
        reference="torch.cdist",
    )
    A3 = torch.randn(2, 3, generator=g, dtype=torch.float64)  # D = 3 = N + 1: a wrong axis shows
    expect_tensor(
        pairwise_distances(A3, A3),
        torch.cdist(A3, A3),
        "pairwise_distances(A, A) for A (2, 3)",
        reference="torch.cdist",
    )


def check_one_hot(one_hot) -> None:
    y = torch.tensor([2, 0, 1, 2, 0])  # the largest class, 3, is absent: the width comes from num_classes
    expected = F.one_hot(y, 4).float()
    out = one_hot(y, 4)
    expect_tensor(out, expected, "one_hot(y = [2, 0, 1, 2, 0], num_classes=4)", reference="F.one_hot(y, 4)")
    expect(
        out.dtype == torch.float32, f"one_hot returned {out.dtype}; make it float32 (a loss multiplies it)"
    )
    y = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(1))
    expect_tensor(
        one_hot(y, 10), F.one_hot(y, 10).float(), "one_hot of 50 labels in 0..9", reference="F.one_hot"
    )


def check_numerical_jacobian(numerical_jacobian) -> None:
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 5, generator=g, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:  # (5,) -> (3,)
        expect(
            not x.requires_grad,
            "numerical_jacobian passed f an input that requires grad: use finite "
            "differences of f's values only, no autograd",
        )
        return torch.tanh(W @ x) + x[:3] ** 3

    x = torch.randn(5, generator=g, dtype=torch.float64)
    x_before = x.clone()
    J = numerical_jacobian(f, x, 1e-6)
    expected = torch.autograd.functional.jacobian(lambda v: torch.tanh(W @ v) + v[:3] ** 3, x)  # (3, 5)
    expect(torch.equal(x, x_before), "numerical_jacobian changed x: step a copy of x (or undo each step)")
    # Central differences in float64 agree with autograd to ~1e-10; a forward difference is off by ~1e-6.
    if isinstance(J, torch.Tensor) and J.shape == expected.shape:
        error = (J.detach().double() - expected).abs().max().item()
        expect(
            not 1e-8 < error < 1e-3,
            f"numerical_jacobian is off by up to {error:.1e}, the size of eps: "
            "a one-sided difference (f(x + eps) - f(x)) / eps? Use the central difference",
        )
    expect_tensor(
        J,
        expected,
        "numerical_jacobian(f, x, 1e-6) for f: (5,) -> (3,)",
        rtol=1e-7,
        atol=1e-8,
        reference="torch.autograd.functional.jacobian",
    )
