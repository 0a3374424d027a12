"""confusion_matrix against scikit-learn's, and plot_confusion_matrix's figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from dlkit.metrics import confusion_matrix
from dlkit.plots import plot_confusion_matrix


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
