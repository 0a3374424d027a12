"""Figures of a fraud detector: the score histogram with the threshold, the precision-recall curve, and the
calibration curve of a model that outputs P(fraud)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["plot_calibration", "plot_precision_recall", "plot_scores"]


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(scores: Any, y: Any, threshold: float, *, title: str = "", labelled: bool = True) -> Any:
    """Histograms of the scores of normal rows and of frauds (log counts), and the threshold."""
    plt = _plt()
    s, y = _np(scores).astype(np.float64), _np(y).astype(np.int64)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    positive = s[s > 0]
    log_x = len(positive) == len(s) and len(s) and positive.max() / positive.min() > 100
    bins = np.geomspace(positive.min(), positive.max(), 60) if log_x else 60
    groups = [("normal", s[y == 0], "C0"), ("fraud", s[y == 1], "C3")] if labelled else [("all", s, "C0")]
    for label, values, color in groups:
        if len(values):
            ax.hist(values, bins=bins, alpha=0.6, color=color, label=f"{label} ({len(values):,})")
    if np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if log_x:
        ax.set_xscale("log")
    ax.set(yscale="log", xlabel="score (higher = more suspicious)", ylabel="rows", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_precision_recall(
    curves: Mapping[str, tuple[Any, Any]], prevalence: float, *, title: str = ""
) -> Any:
    """Precision against recall for each ``{name: (y, scores)}``; the dotted line is a random score."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (y, s) in curves.items():
        precision, recall, _ = precision_recall_curve(_np(y), _np(s))
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(_np(y), _np(s)):.3f})")
    ax.axhline(prevalence, color="k", ls=":", lw=1, label=f"random ({prevalence:.4f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_calibration(curve: Mapping[str, Sequence[float]], *, title: str = "") -> Any:
    """Observed fraud share against the predicted probability per bin (log-log: the probabilities of rare
    fraud span decades); a calibrated model's points lie on the diagonal."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    predicted, observed = np.asarray(curve["predicted"]), np.asarray(curve["observed"])
    floor = 1e-5
    ax.plot(np.clip(predicted, floor, 1), np.clip(observed, floor, 1), "o-", label="model (equal-count bins)")
    ax.plot([floor, 1], [floor, 1], "k--", lw=1, label="perfect calibration")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="predicted P(fraud)",
        ylabel="observed share of frauds",
        title=title,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
