"""confusion_matrix against scikit-learn's, and plot_confusion_matrix's figure; calibration bins, ECE
and the reliability diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from dlkit.metrics import calibration_bins, confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_reliability


@pytest.mark.parametrize("num_classes, n", [(2, 50), (10, 1000), (7, 3)])
def test_confusion_matrix_matches_sklearn(num_classes, n):
    gen = torch.Generator().manual_seed(num_classes)
    targets = torch.randint(0, num_classes, (n,), generator=gen)
    preds = torch.randint(0, num_classes, (n,), generator=gen)
    cm = confusion_matrix(preds, targets, num_classes)
    oracle = sklearn_confusion_matrix(targets.numpy(), preds.numpy(), labels=np.arange(num_classes))
    assert cm.dtype == torch.int64 and cm.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(cm.numpy(), oracle)  # also: rows are the true classes


def test_rows_are_true_classes_and_logits_are_accepted():
    targets = torch.tensor([0, 0, 0, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 0])
    expected = torch.tensor([[1, 2, 0], [0, 1, 0], [1, 0, 0]])
    assert torch.equal(confusion_matrix(preds, targets, 3), expected)
    logits = torch.nn.functional.one_hot(preds, 3).float() * 5 - 1  # (N, C) scores, argmax = preds
    assert torch.equal(confusion_matrix(logits, targets, 3), expected)
    cm = confusion_matrix(preds, targets, 3)
    assert cm.sum() == len(targets) and cm.diag().sum() == (preds == targets).sum()


def test_classes_never_seen_get_zero_rows_and_columns():
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([1, 1]), 4)
    assert cm.shape == (4, 4) and cm[1, 1] == 2 and cm.sum() == 2
    empty = torch.tensor([], dtype=torch.long)
    assert torch.equal(confusion_matrix(empty, empty, 3), torch.zeros(3, 3, dtype=torch.long))


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([-1, 1]), 3)
    with pytest.raises(ValueError, match=r"\(N,\)"):
        confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 3)


def _cell_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_plot_confusion_matrix_normalized_rows(tmp_path):
    cm = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    fig = plot_confusion_matrix(cm, ["a", "b", "c"], title="test")
    texts = _cell_texts(fig)
    assert len(texts) == 9
    assert texts[:3] == ["0.80", "0.20", "0.00"] and texts[3:6] == ["0.25", "0.75", "0.00"]
    assert texts[6:] == ["0.00"] * 3  # a class with no examples: a row of zeros, not a division by zero
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"
    assert ax.get_title() == "test"
    fig.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_plot_confusion_matrix_counts_and_numpy_input():
    cm = np.array([[5, 1], [0, 7]])
    assert _cell_texts(plot_confusion_matrix(cm, ["x", "y"], normalize=False)) == ["5", "1", "0", "7"]
    with pytest.raises(ValueError, match="classes"):
        plot_confusion_matrix(cm, ["x", "y", "z"])


def test_calibration_bins_and_ece(tmp_path):
    confidence = torch.tensor([0.55, 0.65, 0.95, 0.95])
    correct = torch.tensor([True, False, True, True])
    calib = calibration_bins(confidence, correct, bins=10)
    # bins: 0.5-0.6 (acc 1, conf .55), 0.6-0.7 (acc 0, conf .65), 0.9-1.0 (acc 1, conf .95)
    expected = 0.25 * abs(1 - 0.55) + 0.25 * abs(0 - 0.65) + 0.5 * abs(1 - 0.95)
    assert calib["ece"] == pytest.approx(expected, abs=1e-6)
    assert calib["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2] and len(calib["edges"]) == 11
    assert calib["accuracy"][9] == 1.0 and calib["confidence"][9] == pytest.approx(0.95)
    # a model that is right exactly as often as it says is calibrated: ECE -> 0
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(200_000, generator=gen) * 0.5 + 0.5
    honest = calibration_bins(p, torch.rand(200_000, generator=gen) < p)
    assert honest["ece"] < 0.01
    overconfident = calibration_bins(p, torch.rand(200_000, generator=gen) < p - 0.2)
    assert overconfident["ece"] == pytest.approx(0.2, abs=0.01)
    fig = plot_reliability(calib, title="four predictions", unit="reviews")
    assert "(ECE 0.300)" in fig.axes[0].get_title() and fig.axes[1].get_ylabel() == "reviews"
    with pytest.raises(ValueError, match=r"\(N,\) confidences"):
        calibration_bins(torch.rand(3, 2), torch.ones(3, 2, dtype=torch.bool))
