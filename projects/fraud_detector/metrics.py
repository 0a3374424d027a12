"""How good a fraud score is, in the terms a fraud team uses.

- average precision (AUPRC, the primary number: frauds are rare) and ROC-AUC: ``dlkit.anomaly``;
- precision and recall at an alert budget: the team reviews the top 0.1% or 1% of transactions;
- a threshold chosen by cost: a missed fraud costs ``cost_miss``, every review ``cost_review``; the
  threshold (chosen on the validation rows) flags the rows that minimise the total;
- a calibration curve for a model that outputs P(fraud): in equal-count bins of the predicted
  probability, the share of frauds (scikit-learn's ``calibration_curve(strategy="quantile")``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dlkit.anomaly import detection_scores

__all__ = [
    "ALERT_BUDGETS",
    "alert_budget_metrics",
    "at_threshold",
    "calibration_curve",
    "cost_threshold",
    "score_report",
]

ALERT_BUDGETS = (0.001, 0.01)


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _budget_name(budget: float) -> str:
    return f"{100 * budget:g}%"


def alert_budget_metrics(y: Any, scores: Any, budgets: Sequence[float] = ALERT_BUDGETS) -> dict[str, Any]:
    """Precision and recall when the ``ceil(budget * N)`` highest-scored rows are reviewed (ties broken
    by row order), for each budget: ``{"top 0.1%": {"rows", "frauds_found", "precision", "recall"}}``."""
    y, s = _np(y).astype(np.int64).ravel(), _np(scores).astype(np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    positives = max(int(y.sum()), 1)
    out = {}
    for budget in budgets:
        k = max(1, math.ceil(budget * len(s)))
        found = int(y[order[:k]].sum())
        out[f"top {_budget_name(budget)}"] = {
            "rows": k,
            "frauds_found": found,
            "precision": found / k,
            "recall": found / positives,
        }
    return out


def at_threshold(
    y: Any, scores: Any, threshold: float, cost_miss: float, cost_review: float
) -> dict[str, Any]:
    """What flagging every row with score >= ``threshold`` gives: flagged rows, frauds caught and missed,
    precision, recall, and the cost (missed * cost_miss + flagged * cost_review), also per 1,000 rows."""
    y, s = _np(y).astype(np.int64).ravel(), _np(scores).astype(np.float64).ravel()
    flagged = s >= threshold
    caught, positives = int(y[flagged].sum()), int(y.sum())
    cost = (positives - caught) * cost_miss + int(flagged.sum()) * cost_review
    return {
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "frauds_caught": caught,
        "frauds_missed": positives - caught,
        "precision": caught / max(int(flagged.sum()), 1),
        "recall": caught / max(positives, 1),
        "cost": float(cost),
        "cost_per_1000_rows": float(1000 * cost / max(len(s), 1)),
    }


def cost_threshold(y: Any, scores: Any, cost_miss: float, cost_review: float) -> dict[str, Any]:
    """The threshold with the lowest total cost on these rows, among every distinct score (flag that
    score and above) and +inf (flag nothing); returns :func:`at_threshold`'s report for it."""
    if cost_miss <= 0 or cost_review <= 0:
        raise ValueError(f"costs must be > 0, got cost_miss {cost_miss}, cost_review {cost_review}")
    y, s = _np(y).astype(np.int64).ravel(), _np(scores).astype(np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    caught = np.cumsum(y_sorted)  # frauds among the top i + 1 rows
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # a threshold flags a whole tie
    flagged = np.arange(1, len(s) + 1)[last_of_tie]
    costs = (y.sum() - caught[last_of_tie]) * cost_miss + flagged * cost_review
    best = int(np.argmin(costs))
    # +inf when reviewing anything costs more than the frauds it would catch
    threshold = float(s_sorted[last_of_tie][best]) if costs[best] < y.sum() * cost_miss else math.inf
    return at_threshold(y, s, threshold, cost_miss, cost_review)


def calibration_curve(y: Any, probability: Any, bins: int = 10) -> dict[str, list[float]]:
    """In ``bins`` bins of equal count (edges at quantiles of the predicted probability): the mean
    predicted probability and the share of frauds. Equal-width bins would put nearly every row of rare
    fraud into the first bin; equal-count ones show the range where the rows are."""
    y, p = _np(y).astype(np.float64).ravel(), _np(probability).astype(np.float64).ravel()
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.searchsorted(edges[1:-1], p, side="right")  # scikit-learn's binning
    count = np.bincount(which, minlength=bins)
    used = count > 0
    predicted = np.bincount(which, weights=p, minlength=bins)[used] / count[used]
    observed = np.bincount(which, weights=y, minlength=bins)[used] / count[used]
    return {"predicted": predicted.tolist(), "observed": observed.tolist(), "count": count[used].tolist()}


def score_report(
    y: Any, scores: Any, *, threshold: float | None = None, cost_miss: float = 100.0, cost_review: float = 1.0
) -> dict[str, Any]:
    """AP, ROC-AUC, prevalence, the alert budgets and (with ``threshold``) what that threshold does."""
    report: dict[str, Any] = detection_scores(_np(y), _np(scores))
    report["alert_budgets"] = alert_budget_metrics(y, scores)
    if threshold is not None:
        report["at_threshold"] = at_threshold(y, scores, threshold, cost_miss, cost_review)
    return report
