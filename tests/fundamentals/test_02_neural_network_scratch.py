"""Lesson 02: the MLP written from scratch, with PyTorch's autograd as the oracle.

The lesson runs once in quick mode (its own process) and its recorded outcomes are asserted. The
unit tests import only the lesson's definitions (imports, functions, classes, UPPER_CASE constants)
by parsing the file, so they neither parse pytest's argv as the lesson's flags nor train anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "fundamentals/02_neural_network_scratch.py"
ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("mse", "cross_entropy")


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def test_lesson_runs_in_quick_mode(tmp_path):
    data = run_lesson(LESSON, tmp_path=tmp_path, timeout=120)
    for activation in ACTIVATIONS:
        for loss in LOSSES:
            assert outcome(data, f"grad_diff_{activation}_{loss}") < 1e-8
    assert all(o["passed"] for o in data["outcomes"].values()) and outcome_problems(data) == []
    assert data["outcomes"]["test_acc"]["chance"] == 0.1  # ten digits
    assert data["finished"]
    assert {Path(f).name for f in data["figures"]} == {"training_loss.png", "test_predictions.png"}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_and_derivative_match_autograd(lesson, name):
    Z = torch.randn(200, dtype=torch.float64) * 4
    Z = torch.cat([Z, torch.tensor([-50.0, 50.0], dtype=torch.float64)])
    act, act_grad = lesson.ACTIVATIONS[name]
    ref = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]
    Z_ref = Z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(ref(Z_ref).sum(), Z_ref)
    torch.testing.assert_close(act(Z), ref(Z), rtol=0, atol=1e-10)
    torch.testing.assert_close(act_grad(Z), grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_and_gradient_match_autograd(lesson, name):
    y_hat = torch.randn(32, 10, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (32,))
    loss_fn, loss_grad = lesson.LOSSES[name]
    y_hat_ref = y_hat.clone().requires_grad_()
    one_hot = F.one_hot(y, 10).double()
    ref = F.mse_loss(y_hat_ref, one_hot) if name == "mse" else F.cross_entropy(y_hat_ref, y)
    (grad,) = torch.autograd.grad(ref, y_hat_ref)
    assert abs(loss_fn(y_hat, y).item() - ref.item()) < 1e-10
    torch.testing.assert_close(loss_grad(y_hat, y), grad, rtol=0, atol=1e-10)


def test_cross_entropy_is_stable_for_huge_logits(lesson):
    # exp(1000) overflows even float64; the log-sum-exp trick must not.
    y_hat = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]])
    y = torch.tensor([0, 2])
    loss = lesson.cross_entropy(y_hat, y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(y_hat, y))
    assert torch.isfinite(lesson.cross_entropy_grad(y_hat, y)).all()
    torch.testing.assert_close(lesson.softmax(y_hat).sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_backward_matches_autograd(lesson, activation):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(20, 7, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    model = lesson.MLPScratch([7, 9, 5, 4], activation, generator=gen).to(dtype=torch.float64)
    y_hat = model(X)
    grads = model.backward(lesson.cross_entropy_grad(y_hat, y))
    params = {k: v.clone().requires_grad_() for k, v in model.params.items()}
    ref = lesson.reference_loss(params, X, y, activation, "cross_entropy")
    ref_grads = torch.autograd.grad(ref, list(params.values()))
    assert set(grads) == set(params) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    for name, g in zip(params, ref_grads, strict=True):
        assert grads[name].shape == params[name].shape
        torch.testing.assert_close(grads[name], g, rtol=0, atol=1e-10)


def test_sgd_step_updates_in_place(lesson):
    params = {"W1": torch.ones(2, 2), "b1": torch.zeros(2)}
    W1 = params["W1"]
    lesson.sgd_step(params, {"W1": torch.full((2, 2), 2.0), "b1": torch.ones(2)}, lr=0.5)
    assert params["W1"] is W1
    torch.testing.assert_close(W1, torch.zeros(2, 2))
    torch.testing.assert_close(params["b1"], torch.full((2,), -0.5))
