"""Lesson 05 (optimisation) in quick mode: optimisers, schedules, losses and regularisation as measured.

Quick mode runs on a Fashion-MNIST subset when it is found locally, else on scikit-learn's digits;
every threshold here holds for both (chance is 0.1 on either).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import outcome, run_lesson

LESSON = "fundamentals/05_optimization.py"
CHANCE = 0.1  # ten classes in both data sets


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("lesson05"))


def test_says_which_data_it_used(result):
    assert len(result["data"]) == 1
    assert set(result["data"]) <= {"fashion_mnist", "digits"}


def test_every_accuracy_is_well_above_chance(result):
    accuracies = {k: v["value"] for k, v in result["outcomes"].items() if "acc" in k and "minus" not in k}
    assert len(accuracies) >= 13
    assert outcome(result, "acc_sgd") > 2 * CHANCE  # plain SGD at lr 0.01 is slow, but it learns
    others = {k: v for k, v in accuracies.items() if k not in ("acc_sgd", "acc_mse")}
    assert min(others.values()) > 4 * CHANCE, others


def test_momentum_and_adam_beat_plain_sgd_at_lr_001(result):
    assert outcome(result, "momentum_minus_sgd") > 0.1
    assert outcome(result, "adam_minus_sgd") > 0.1
    assert outcome(result, "acc_adamw") > 0.6


def test_schedule_values_at_known_steps(result):
    total, warmup = outcome(result, "sched_total_steps"), outcome(result, "sched_warmup_steps")
    assert total == 8 * 25  # quick mode: 8 epochs of 800 examples in batches of 32
    assert warmup == total // 10
    assert outcome(result, "steplr_after_first_drop") == pytest.approx(0.1, abs=1e-9)
    assert outcome(result, "cosine_mid") == pytest.approx(0.5, abs=1e-6)
    assert outcome(result, "cosine_end") == pytest.approx(0.0, abs=1e-9)
    assert outcome(result, "onecycle_start") == pytest.approx(1 / 25, abs=1e-9)
    assert 0.28 <= outcome(result, "onecycle_peak_at") <= 0.31  # pct_start=0.3
    assert outcome(result, "warmup_start") == pytest.approx(1 / warmup, abs=1e-9)
    assert outcome(result, "warmup_end") == pytest.approx(1.0, abs=1e-9)  # the peak, at the end of warmup
    assert outcome(result, "warmup_cosine_mid") == pytest.approx(0.5, abs=0.01)
    assert outcome(result, "warmup_cosine_end") == pytest.approx(0.0, abs=1e-9)


def test_scheduled_runs_train(result):
    assert outcome(result, "acc_warmup_cosine") > 0.6
    assert outcome(result, "acc_onecycle") > 0.6
    assert outcome(result, "warmup_cosine_minus_constant") > -0.1  # a short run: no worse than 10 points


def test_cross_entropy_beats_mse_with_sgd(result):
    assert outcome(result, "ce_minus_mse") > 0.05  # SGD feels MSE's small gradients
    assert outcome(result, "ce_minus_mse_adam") > -0.1  # Adam rescales them: about a tie
    assert outcome(result, "acc_mse") > 2 * CHANCE


def test_regularisation(result):
    for key in ("baseline", "dropout", "batch_norm", "weight_decay"):
        assert outcome(result, f"test_acc_{key}") > 0.5
        assert -0.05 < outcome(result, f"gap_{key}") < 0.5
    assert outcome(result, "gap_baseline") > 0.02  # the small training set is fitted better than the test set
    assert outcome(result, "dropout_gap_reduction") > -0.05
    assert outcome(result, "batch_norm_train_loss_ratio") < 0.7  # batch norm fits the training set faster


def test_figures_and_ranges(result):
    names = {Path(f).name for f in result["figures"]}
    expected = {"optimizer_loss_curves.png", "lr_schedules.png", "schedule_test_accuracy.png"}
    assert expected | {"regularization_test_loss.png"} <= names
    assert all(o["passed"] for o in result["outcomes"].values())
