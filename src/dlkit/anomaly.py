"""Anomaly detection scored honestly: a normal-only split, ROC-AUC and average precision, a baseline.

A detector learns what *normal* rows look like and gives every row a score, higher = more anomalous.

    split = normal_only_split(data.y, seed=0)          # train/val: normal rows only; test: the rest
    scaler = ColumnScaler.fit(data.x[split.train])     # statistics of the training rows only
    scores = my_detector(scaler(data.x[split.train]), scaler(data.x[split.test]))
    detection_scores(data.y[split.test], scores)       # {"roc_auc": ..., "ap": ..., "prevalence": ...}
    isolation_forest_baseline(data.x, data.y, split)   # the same split, scikit-learn's IsolationForest

Average precision (AUPRC) is the metric to read when anomalies are rare: a detector that guesses
scores AP = the share of anomalies ("prevalence"), while its ROC-AUC is 0.5 whatever the share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dlkit.errors import UserError

__all__ = [
    "AnomalySplit",
    "ColumnScaler",
    "detection_scores",
    "isolation_forest_baseline",
    "isolation_forest_scores",
    "normal_only_split",
]

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def detection_scores(y_true: ArrayLike, scores: ArrayLike) -> dict[str, float]:
    """ROC-AUC and average precision (scikit-learn's) of anomaly ``scores`` (higher = more anomalous)
    for labels ``y_true`` (1 = anomaly), and the prevalence, which is the AP of random scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _numpy(y_true).ravel(), _numpy(scores).astype(np.float64).ravel()
    if len(y) != len(s):
        raise UserError(f"{len(y)} labels but {len(s)} scores: score every row exactly once")
    if not np.isfinite(s).all():
        raise UserError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite: check the detector")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise UserError(f"labels must hold both 0 (normal) and 1 (anomaly), got {sorted(set(y.tolist()))}")
    return {
        "roc_auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "prevalence": float(y.mean()),
    }


@dataclass
class AnomalySplit:
    """Row indices: ``train`` and ``val`` hold normal rows only; ``test`` the held-out normal rows and
    every anomaly. Validation serves model selection (e.g. early stopping on reconstruction error)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def describe(self, y: ArrayLike) -> str:
        y = _numpy(y)
        t = y[self.test]
        return (
            f"train {len(self.train):,} normal, val {len(self.val):,} normal, "
            f"test {len(t):,} ({int(t.sum()):,} anomalies, {t.mean():.1%})"
        )


def normal_only_split(
    y: ArrayLike, *, test_fraction: float = 0.5, val_fraction: float = 0.1, seed: int = 0
) -> AnomalySplit:
    """Split the rows for a detector trained on normal data only.

    ``test_fraction`` of the normal rows and all anomalies (y == 1) are scored; of the other normal
    rows, ``val_fraction`` go to validation and the rest to training. Indices are sorted; the same
    seed gives the same split.
    """
    y = _numpy(y).ravel()
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(
            f"need 0 < test_fraction < 1 and 0 <= val_fraction < 1, got {test_fraction}, {val_fraction}"
        )
    normal, anomalies = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if len(anomalies) == 0 or len(normal) < 3:
        raise UserError(f"a split needs anomalies and normal rows: got {len(anomalies)} and {len(normal)}")
    normal = np.random.default_rng(seed).permutation(normal)
    num_test = int(round(test_fraction * len(normal)))
    rest = normal[num_test:]
    num_val = int(round(val_fraction * len(rest)))
    return AnomalySplit(
        train=np.sort(rest[num_val:]),
        val=np.sort(rest[:num_val]),
        test=np.sort(np.r_[normal[:num_test], anomalies]),
    )


@dataclass
class ColumnScaler:
    """x -> (x - mean) / std, column by column, with the statistics of the rows it was fitted on
    (a constant column gets std 1). ``dlkit.data.Standardize`` is its one-number twin for images."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> ColumnScaler:
        std = x.std(0)
        return cls(x.mean(0), torch.where(std > 1e-8, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def isolation_forest_scores(
    x_fit: ArrayLike, x_score: ArrayLike, *, seed: int = 0, n_estimators: int = 100
) -> np.ndarray:
    """Anomaly scores of ``x_score`` (higher = more anomalous) from scikit-learn's IsolationForest
    fitted on ``x_fit``: the negated ``score_samples`` (short average path = easy to isolate)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=n_estimators, random_state=seed)
    forest.fit(_numpy(x_fit))
    return -forest.score_samples(_numpy(x_score))


def isolation_forest_baseline(
    x: ArrayLike, y: ArrayLike, split: AnomalySplit | None = None, *, seeds: Sequence[int] = (0, 1, 2)
) -> dict[str, float]:
    """Mean ROC-AUC and AP of IsolationForest over ``seeds``: fitted on ``split.train`` and scored on
    ``split.test``, or (``split=None``) fitted and scored on all rows, as the ADBench tables do."""
    x, y = _numpy(x), _numpy(y).ravel()
    fit_rows, score_rows = (split.train, split.test) if split is not None else (slice(None), slice(None))
    runs = [detection_scores(y[score_rows], isolation_forest_scores(x[fit_rows], x[score_rows], seed=s))
            for s in seeds]  # fmt: skip
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
