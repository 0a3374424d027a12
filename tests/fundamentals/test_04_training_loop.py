"""Lesson 04 (the training loop) in quick mode: shuffling, early stopping, checkpoints and resume.

The lesson checks its own outcomes against their ranges (and that each range can fail); these tests
check that it recorded what it teaches, and the from-scratch pieces against PyTorch's own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, load_definitions, run_lesson
from torch.utils.data import DataLoader, TensorDataset

from dlkit.data import Standardize
from dlkit.lesson import outcome_problems

LESSON = "fundamentals/04_training_loop.py"
OUTCOMES = {
    "shuffle_epochs_differ", "shuffle_seed_repeats", "early_stopped", "restored_val_loss_gap", "test_acc",
    "state_dict_reload_max_abs_diff", "resume_max_abs_diff", "resume_without_rng_max_abs_diff",
    "fit_vs_hand_max_abs_diff",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("lesson04")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "fundamentals" / "04_training_loop"
    return data


def test_records_what_it_teaches_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == OUTCOMES  # the loader speeds are printed in full mode, not recorded
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    assert result["outcomes"]["test_acc"]["chance"] == pytest.approx(0.1)


def test_run_folder_data_and_figures(result):
    assert result["quick"] and result["finished"]
    assert list(result["data"]) in (["fashion_mnist"], ["digits"])  # the set it used, named
    assert {Path(f).name for f in result["figures"]} == {"samples.png", "curves.png"}
    assert len((result["run_dir"] / "fit" / "metrics.csv").read_text().splitlines()) == 1 + 2  # header + 2
    assert "early stop: no better validation loss since epoch" in result["stdout"]
    assert "# exercises: 0 passing, 0 failing, 3 not started" in result["stdout"]  # the stubs, as shipped


def test_early_stopping_waits_patience_epochs_and_the_checkpoint_holds_what_resumes(result):
    ran, kept = re.search(r"ran (\d+) of at most \d+ epochs; kept epoch (\d+)", result["stdout"]).groups()
    assert int(ran) == int(kept) + 3  # the lesson's patience: stopped exactly 3 epochs after the best one
    checkpoint = torch.load(result["run_dir"] / "checkpoints" / "killed.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "rng"} <= set(checkpoint)
    assert checkpoint["epoch"] == 3  # quick mode's resume_epochs: the resumed run went on to the end
    assert {"cpu", "loader"} <= set(checkpoint["rng"])
    assert checkpoint["optimizer"]["state"], "Adam's running averages are saved"


def test_image_dataset_with_standardize_matches_tensor_dataset():
    lesson = load_definitions(ROOT / LESSON)
    X, y = torch.rand(10, 1, 4, 4), torch.arange(10)
    dataset = lesson.ImageDataset(X, y, Standardize(0.5, 0.25))
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
    assert "load_digits" in data["data"]["digits"]
    assert set(data["outcomes"]) == OUTCOMES and all(o["passed"] for o in data["outcomes"].values())
