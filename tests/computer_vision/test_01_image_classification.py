"""Lesson computer_vision/01 in quick mode, and its hand-written convolution and pooling against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch import nn

from dlkit.lesson import outcome_problems
from dlkit.nets import make_cnn

LESSON = "computer_vision/01_image_classification.py"
FIGURES = {
    "edge_filters",
    "receptive_field",
    "augmented_samples",
    "cnn_history",
    "confusion",
    "misclassified",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("cv01"))


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


# --- The lesson, run in quick mode ------------------------------------------------------------------


def test_conv_and_pool_by_hand_equal_pytorch(result):
    assert outcome(result, "conv_max_abs_diff") < 1e-10  # float64: rounding error only
    assert outcome(result, "pool_max_abs_diff") == 0.0  # a max picks one of the inputs: exact
    assert outcome(result, "shape_mismatches") == 0


def test_receptive_fields_and_parameter_counts(result):
    assert outcome(result, "receptive_field") == 22  # 3 blocks of conv 3x3 + pool 2x2: 1+2+1+4+4+8+2
    assert outcome(result, "receptive_field_gap") == 0  # the gradient reaches exactly that square
    assert outcome(result, "receptive_field_four_convs") == 9
    assert outcome(result, "conv_params") == 32 * (1 * 9 + 1)
    side = 28 if "fashion_mnist" in result["data"] else 8
    assert outcome(result, "dense_params") == (side * side + 1) * 32 * side * side
    assert 50_000 < outcome(result, "cnn_params") < 200_000


def test_both_models_learn_and_every_range_can_fail(result):
    assert {"baseline_acc", "test_acc"} <= set(result["outcomes"])
    assert "cnn_gain_over_baseline" not in result["outcomes"]  # printed in quick mode, checked in full
    assert "x the mistakes" in result["stdout"]
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    run_dir = Path(result["figures"][0]).parent  # runs/computer_vision/01_image_classification
    assert len((run_dir / "cnn" / "metrics.csv").read_text().splitlines()) == 1 + 3  # header + 3 epochs
    assert (run_dir / "logistic_regression" / "metrics.csv").exists()


def test_data_figures_and_quick_mode(result):
    assert result["quick"] and result["finished"]
    assert list(result["data"]) in (["fashion_mnist"], ["digits"])
    assert {Path(f).stem for f in result["figures"]} == FIGURES


# --- The from-scratch functions against PyTorch ------------------------------------------------------


@pytest.mark.parametrize(
    "k, stride, padding", [(3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2), (2, 3, 0), (1, 1, 0)]
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_by_hand_matches_f_conv2d(lesson, k, stride, padding, with_bias):
    gen = torch.Generator().manual_seed(k * 10 + stride)
    x = torch.randn(3, 2, 9, 12, dtype=torch.float64, generator=gen)  # (B, C_in, H, W), not square
    weight = torch.randn(5, 2, k, k, dtype=torch.float64, generator=gen)  # (C_out, C_in, k, k)
    bias = torch.randn(5, dtype=torch.float64, generator=gen) if with_bias else None
    ours = lesson.conv2d_by_hand(x, weight, bias, stride, padding)
    theirs = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)


def test_conv2d_by_hand_has_the_same_gradients(lesson):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=gen)
    weight, bias = (
        torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen),
        torch.randn(4, dtype=torch.float64),
    )
    grads = []
    for conv in (lesson.conv2d_by_hand, lambda *a: F.conv2d(*a[:3], stride=a[3], padding=a[4])):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        (conv(*leaves, 2, 1) ** 2).sum().backward()
        grads.append([t.grad for t in leaves])
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "k, stride, padding", [(2, None, 0), (2, 2, 1), (3, 2, 1), (3, 1, 1), (3, 3, 0), (4, 2, 2)]
)
def test_max_pool2d_by_hand_matches_f_max_pool2d(lesson, k, stride, padding):
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    x[0, 0] = -5.0  # all negative: padding must never win the max (it pads with -inf, not 0)
    ours = lesson.max_pool2d_by_hand(x, k, stride, padding)
    theirs = F.max_pool2d(x, k, stride=stride, padding=padding)
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "size, k, stride, padding", [(28, 3, 1, 1), (28, 2, 2, 0), (7, 2, 2, 0), (32, 7, 2, 3)]
)
def test_output_size_formula(lesson, size, k, stride, padding):
    out = nn.Conv2d(1, 1, k, stride, padding)(torch.zeros(1, 1, size, size))
    assert out.shape[-1] == lesson.output_size(size, k, stride, padding)


def test_receptive_field_formula_and_measurement(lesson):
    torch.manual_seed(0)
    # conv 3 stride 2 (field 3, jump 2), max pool 3 stride 2 (3 + 2*2 = 7, jump 4), conv 5 (7 + 4*4 = 23)
    stack = nn.Sequential(
        nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 5, padding=2)
    )
    assert lesson.receptive_field(stack) == 23
    grad = lesson.gradient_of_center_pixel(lesson.linear_twin(stack), side=96)
    assert lesson.nonzero_extent(grad) == (23, 23)
    assert lesson.receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))) == 5


def test_make_cnn_is_the_lessons_cnn():
    model = make_cnn(1, 10, (32, 64, 128), image_size=28, dropout=0.2)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model[-1].in_features == 128 * 3 * 3  # 28 -> 14 -> 7 -> 3
    assert make_cnn(3, 10, (8, 16, 32, 32), pools=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)  # global max
    with pytest.raises(ValueError, match="nothing of a 8 x 8 image"):
        make_cnn(1, 10, (4, 4, 4, 4), image_size=8)


@pytest.mark.slow
def test_quick_mode_falls_back_to_digits_without_fashion_mnist(tmp_path):
    """A user's machine may have no Fashion-MNIST: quick mode then uses scikit-learn's 8x8 digits."""
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert list(data["data"]) == ["digits"]
    assert all(o["passed"] for o in data["outcomes"].values()) and outcome_problems(data) == []
