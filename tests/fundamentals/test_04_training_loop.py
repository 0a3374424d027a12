"""Lesson 04 (the training loop) in quick mode: shuffling, early stopping, checkpoints and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch.utils.data import DataLoader, TensorDataset

LESSON = "fundamentals/04_training_loop.py"
PATIENCE, MAX_EPOCHS, QUICK_RESUME_EPOCHS = 3, 30, 3  # the lesson's defaults and quick override


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("lesson04")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "fundamentals" / "04_training_loop"
    return data


def test_shuffling_changes_every_epoch_and_a_seed_repeats_it(result):
    assert outcome(result, "shuffle_epochs_differ") == 1.0
    assert outcome(result, "shuffle_seed_repeats") == 1.0


def test_accuracy_on_the_test_set(result):
    assert outcome(result, "test_acc") >= 0.70


def test_early_stopping_keeps_the_best_epoch(result):
    epochs_run, best_epoch = outcome(result, "epochs_run"), outcome(result, "best_epoch")
    assert outcome(result, "early_stopped") == 1.0
    assert epochs_run < MAX_EPOCHS
    assert epochs_run == best_epoch + PATIENCE  # stopped exactly `patience` epochs after the best one
    assert outcome(result, "restored_val_loss_gap") < 1e-5  # the best weights are the ones put back


def test_state_dict_round_trip(result):
    assert outcome(result, "state_dict_reload_max_abs_diff") == 0.0
    state = torch.load(result["run_dir"] / "mlp_best.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_resume_from_a_checkpoint_gives_the_same_weights(result):
    assert outcome(result, "resume_max_abs_diff") < 1e-6
    assert outcome(result, "resume_without_rng_max_abs_diff") > 1e-4  # the RNG states are what matter
    checkpoint = torch.load(result["run_dir"] / "checkpoints" / "killed.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "rng"} <= set(checkpoint)
    assert checkpoint["epoch"] == QUICK_RESUME_EPOCHS
    assert {"cpu", "loader"} <= set(checkpoint["rng"])


def test_dlkit_fit_is_the_same_loop(result):
    assert outcome(result, "fit_vs_hand_max_abs_diff") < 1e-5
    assert len((result["run_dir"] / "fit" / "metrics.csv").read_text().splitlines()) == 1 + 2  # header + 2


def test_data_figures_and_quick_mode(result):
    assert result["quick"] and result["finished"]
    assert "Fashion-MNIST" in result["data"]["train"] or "load_digits" in result["data"]["train"]
    assert "data: " in result["stdout"]
    assert not any(key.startswith("batches_per_s") for key in result["outcomes"])  # full mode only
    assert {Path(f).name for f in result["figures"]} == {"samples.png", "curves.png"}


def test_image_dataset_matches_tensor_dataset():
    lesson = load_definitions(ROOT / LESSON)
    X, y = torch.rand(10, 1, 4, 4), torch.arange(10)
    dataset = lesson.ImageDataset(X, y, lesson.Standardize(0.5, 0.25))
    oracle = TensorDataset((X - 0.5) / 0.25, y)
    assert len(dataset) == len(oracle) == 10
    for (a, b), (c, d) in zip(
        DataLoader(dataset, batch_size=4), DataLoader(oracle, batch_size=4), strict=True
    ):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert torch.equal(lesson.ImageDataset(X, y)[3][0], X[3])  # no transform: the tensor itself


@pytest.mark.slow
def test_quick_mode_falls_back_to_digits_without_fashion_mnist(tmp_path):
    """A user's machine may have no Fashion-MNIST: quick mode then uses scikit-learn's digits."""
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "load_digits" in data["data"]["train"]
    assert "scikit-learn digits" in data["stdout"]
    assert outcome(data, "test_acc") >= 0.70
    assert outcome(data, "resume_max_abs_diff") < 1e-6
    assert outcome(data, "early_stopped") == 1.0
