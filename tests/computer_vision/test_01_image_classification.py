"""Lesson computer_vision/01 in quick mode, and its hand-written convolution and pooling against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch import nn

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
    tmp_path = tmp_path_factory.mktemp("cv01")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "computer_vision" / "01_image_classification"
    return data


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


# --- The lesson, run in quick mode ------------------------------------------------------------------


def test_conv_and_pool_by_hand_equal_pytorch(result):
    assert outcome(result, "conv_max_abs_diff") < 1e-10  # float64: rounding error only
    assert outcome(result, "pool_max_abs_diff") == 0.0  # a max picks one of the inputs: exact
    assert outcome(result, "shape_checks") >= 36
    assert outcome(result, "shape_mismatches") == 0


def test_receptive_fields_and_parameter_counts(result):
    assert outcome(result, "receptive_field") == 22  # 3 blocks of conv 3x3 + pool 2x2: 1+2+1+4+4+8+2
    assert outcome(result, "receptive_field_gap") == 0  # the gradient reaches exactly that square
    assert outcome(result, "receptive_field_four_convs") == 9
    assert outcome(result, "conv_params") == 32 * (1 * 9 + 1)
    side = 28 if "Fashion-MNIST" in result["data"]["train"] else 8
    assert outcome(result, "dense_params") == (side * side + 1) * 32 * side * side
    assert 50_000 < outcome(result, "cnn_params") < 200_000


def test_both_models_learn(result):
    assert outcome(result, "baseline_acc") >= 0.65
    assert outcome(result, "test_acc") >= 0.70
    assert outcome(result, "worst_class_recall") >= 0.0
    metrics = (result["run_dir"] / "cnn" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 1 + 3  # header + the 3 quick-mode epochs
    assert (result["run_dir"] / "logistic_regression" / "metrics.csv").exists()


def test_data_figures_and_quick_mode(result):
    assert result["quick"] and result["finished"]
    assert "Fashion-MNIST" in result["data"]["train"] or "load_digits" in result["data"]["train"]
    assert {Path(f).stem for f in result["figures"]} == FIGURES
    assert all(o["passed"] for o in result["outcomes"].values())


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


def test_flip_and_shift_moves_one_pixel_by_at_most_max_shift(lesson):
    torch.manual_seed(0)
    X = torch.zeros(64, 1, 9, 9)
    X[:, 0, 4, 4] = 1.0  # one bright pixel in the middle of each image
    out = lesson.flip_and_shift(X, max_shift=2, flip=False, fill=0.0)
    assert out.shape == X.shape and torch.equal(out.sum(dim=(1, 2, 3)), X.sum(dim=(1, 2, 3)))
    rows, cols = out[:, 0].amax(2).argmax(1), out[:, 0].amax(1).argmax(1)
    assert (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # offsets differ between images
    assert torch.equal(lesson.flip_and_shift(X, max_shift=0, flip=False, fill=0.0), X)


def test_flip_and_shift_mirrors_about_half_and_pads_with_fill(lesson):
    torch.manual_seed(0)
    X = torch.arange(5.0).expand(200, 1, 5, 5)  # every row 0 1 2 3 4
    flipped = lesson.flip_and_shift(X, max_shift=0, flip=True, fill=0.0)
    is_mirror = (flipped == X.flip(-1)).flatten(1).all(1)
    assert ((flipped == X).flatten(1).all(1) | is_mirror).all()
    assert 60 < is_mirror.sum() < 140
    shifted = lesson.flip_and_shift(torch.zeros(50, 1, 4, 4), max_shift=1, flip=False, fill=-7.0)
    assert set(shifted.unique().tolist()) <= {0.0, -7.0} and (shifted == -7.0).any()


@pytest.mark.slow
def test_quick_mode_falls_back_to_digits_without_fashion_mnist(tmp_path):
    """A user's machine may have no Fashion-MNIST: quick mode then uses scikit-learn's 8x8 digits."""
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "load_digits" in data["data"]["train"]
    assert outcome(data, "test_acc") >= 0.85
    assert outcome(data, "receptive_field_gap") == 0
