"""Lesson 05 (optimisation) in quick mode: optimisers, schedules, losses and regularisation as measured.

Quick mode runs on a Fashion-MNIST subset when it is found locally, else on scikit-learn's digits; its
recorded claims hold for both (the lesson checks each against a range that could fail). What quick
mode is too short to show (a schedule paying off, dropout and weight decay holding the test loss
down) is printed, not recorded: full mode records those.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_lesson

from dlkit.lesson import outcome_problems

LESSON = "fundamentals/05_optimization.py"
QUICK_OUTCOMES = {
    "acc_sgd", "acc_momentum", "acc_adam", "acc_adamw", "momentum_minus_sgd", "adam_minus_sgd",
    "steplr_after_first_drop", "cosine_mid", "cosine_end", "onecycle_start", "onecycle_peak_at",
    "warmup_start", "warmup_end", "warmup_cosine_mid", "warmup_cosine_end", "acc_warmup_cosine",
    "acc_onecycle", "acc_mse", "ce_minus_mse", "acc_mse_adam", "ce_minus_mse_adam", "test_acc_baseline",
    "test_acc_dropout", "test_acc_batch_norm", "test_acc_weight_decay", "gap_baseline",
    "batch_norm_train_loss_ratio",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("lesson05"))


def test_says_which_data_it_used(result):
    assert len(result["data"]) == 1
    assert set(result["data"]) <= {"fashion_mnist", "digits"}


def test_records_its_quick_claims_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == QUICK_OUTCOMES
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    accuracies = [o for name, o in result["outcomes"].items() if name.startswith(("acc_", "test_acc"))]
    assert accuracies and all(o["chance"] == pytest.approx(0.1) for o in accuracies)


def test_prints_what_quick_mode_cannot_show(result):
    assert "warmup + cosine vs constant lr" in result["stdout"]
    assert "test loss / baseline's" in result["stdout"]
    assert "# exercises: 0 passing, 0 failing, 3 not started" in result["stdout"]  # the stubs, as shipped


def test_figures(result):
    names = {Path(f).name for f in result["figures"]}
    expected = {"optimizer_loss_curves.png", "lr_schedules.png", "schedule_test_accuracy.png"}
    assert expected | {"regularization_test_loss.png"} <= names
