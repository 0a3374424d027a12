"""Lesson 01 runs in quick mode and measures what it teaches; its finite-difference routine is right."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "fundamentals/01_pytorch_basics.py"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("lesson01"))


def test_tensor_semantics(outcomes: dict[str, Any]) -> None:
    assert outcome(outcomes, "broadcast_shape_ok") == 1.0
    assert outcome(outcomes, "view_shares_storage") == 1.0
    assert outcome(outcomes, "copies_are_independent") == 1.0
    assert outcome(outcomes, "numpy_shares_memory") == 1.0


def test_digits_are_normalised_per_pixel(outcomes: dict[str, Any]) -> None:
    assert outcome(outcomes, "normalised_mean_abs") < 1e-4
    assert abs(outcome(outcomes, "normalised_std") - 1.0) < 1e-3
    assert "digits" in outcomes["data"]


def test_autograd(outcomes: dict[str, Any]) -> None:
    assert outcome(outcomes, "grad_accumulates") == 1.0
    assert outcome(outcomes, "no_grad_builds_no_graph") == 1.0
    assert outcome(outcomes, "finite_difference_max_abs_diff") < 1e-6
    assert outcome(outcomes, "gradcheck_passed") == 1.0


def test_timings_are_printed_not_recorded_and_every_range_can_fail(outcomes: dict[str, Any]) -> None:
    assert "GFLOP/s" in outcomes["stdout"]
    assert not any("matmul" in name for name in outcomes["outcomes"])  # a time depends on the machine
    if not outcomes["device"].startswith(("cuda", "mps")):
        assert "GPU timing skipped" in outcomes["stdout"]
    assert all(o["passed"] for o in outcomes["outcomes"].values())
    assert outcome_problems(outcomes) == []
    assert "# exercises: 0 passing, 0 failing, 3 not started" in outcomes["stdout"]  # the stubs, as shipped


def test_central_difference_matches_autograd_on_another_function() -> None:
    central_difference = load_definitions(ROOT / LESSON).central_difference
    torch.manual_seed(1)
    W = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)  # a matrix input this time
    v = torch.randn(4, dtype=torch.float64)

    def f(W: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(torch.tanh(W) @ v, dim=0) + (W**3).sum() * 0.1

    f(W).backward()
    W_before = W.detach().clone()
    numeric = central_difference(f, W, 1e-6)
    assert numeric.shape == W.shape
    assert (numeric - W.grad).abs().max().item() < 1e-7
    assert torch.equal(W.detach(), W_before)  # it perturbs a copy, never the caller's tensor
