"""Lesson 05 (optimisation) in quick mode: optimisers, schedules, losses and regularisation as measured.

Quick mode runs on a Fashion-MNIST subset when it is found locally, else on scikit-learn's digits; its
recorded claims hold for both (the lesson checks each against a range that could fail). Comparisons
and per-epoch curves use a validation split held out of the training data; the test subset scores each
final model once. What quick mode is too short to show (a schedule paying off, dropout and weight decay
holding the validation loss down) is printed, not recorded: full mode records those.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_lesson

from dlkit.lesson import outcome_problems

LESSON = "fundamentals/05_optimization.py"
QUICK_OUTCOMES = {
    "test_acc_sgd", "test_acc_momentum", "test_acc_adam", "test_acc_adamw", "val_acc_momentum_minus_sgd",
    "val_acc_adam_minus_sgd", "steplr_after_first_drop", "cosine_mid", "cosine_end", "onecycle_start",
    "onecycle_peak_at", "warmup_start", "warmup_end", "warmup_cosine_mid", "warmup_cosine_end",
    "test_acc_warmup_cosine", "test_acc_onecycle", "test_acc_mse", "val_acc_ce_minus_mse",
    "test_acc_mse_adam", "val_acc_ce_minus_mse_adam", "test_acc_baseline", "test_acc_dropout",
    "test_acc_batch_norm", "test_acc_weight_decay", "val_gap_baseline", "batch_norm_train_loss_ratio",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("lesson05"))


def test_says_which_data_it_used(result):
    assert len(result["data"]) == 1
    assert set(result["data"]) <= {"fashion_mnist", "digits"}
    assert "validation: 500" in next(iter(result["data"].values()))  # held out of the training set


def test_a_validation_split_that_leaves_nothing_to_train_on_is_one_clear_line(tmp_path):
    env = {**os.environ, "DLKIT_DATA": str(tmp_path), "DLKIT_CACHE": str(tmp_path), "DLKIT_SYSTEM_DATA": "0"}
    env |= {"DLKIT_RUNS": str(tmp_path / "runs")}  # no data anywhere: quick mode uses digits (1,437 train)
    proc = subprocess.run(
        [sys.executable, str(ROOT / LESSON), "--quick", "--num-val", "1437"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--num-val 1437 leaves nothing to train on" in proc.stderr and "Traceback" not in proc.stderr


def test_records_its_quick_claims_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == QUICK_OUTCOMES
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    accuracies = [o for name, o in result["outcomes"].items() if name.startswith("test_acc_")]
    assert accuracies and all(o["chance"] == pytest.approx(0.1) for o in accuracies)


def test_prints_what_quick_mode_cannot_show(result):
    assert "warmup + cosine vs constant lr" in result["stdout"]
    assert "validation loss / baseline's" in result["stdout"]
    assert "# exercises: 0 passing, 0 failing, 3 not started" in result["stdout"]  # the stubs, as shipped


def test_figures(result):
    names = {Path(f).name for f in result["figures"]}
    expected = {"optimizer_loss_curves.png", "lr_schedules.png", "schedule_val_accuracy.png"}
    assert expected | {"regularization_val_loss.png"} <= names
