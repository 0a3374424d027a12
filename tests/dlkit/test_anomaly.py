"""dlkit.anomaly: the metrics against their definitions and scikit-learn's, the normal-only split, the
IsolationForest baseline on planted outliers and (where the data is) on ODDS cardio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_dataset
from scipy.stats import rankdata

from dlkit.anomaly import (
    ColumnScaler,
    detection_scores,
    isolation_forest_baseline,
    isolation_forest_scores,
    normal_only_split,
)
from dlkit.errors import UserError


def roc_auc_by_ranks(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney: the chance that a random anomaly outscores a random normal row (ties count 1/2)."""
    ranks = rankdata(s)  # average ranks for ties
    n1, n0 = y.sum(), len(y) - y.sum()
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def ap_by_definition(y: np.ndarray, s: np.ndarray) -> float:
    """AP = sum over thresholds of (recall_n - recall_{n-1}) * precision_n, tied scores as one threshold."""
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        flagged = s >= t
        tp = (y[flagged] == 1).sum()
        recall, precision = tp / y.sum(), tp / flagged.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return float(ap)


def test_scikit_learn_documentation_example():
    scores = detection_scores([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert scores["roc_auc"] == pytest.approx(0.75)
    assert scores["ap"] == pytest.approx(0.8333333333)  # (1/2 * 1) + (1/2 * 2/3)
    assert scores["prevalence"] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_their_definitions_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.1).astype(np.int64)
    s = np.round(rng.normal(size=400) + 1.5 * y, 1)  # rounded: many ties
    got = detection_scores(torch.from_numpy(y), torch.from_numpy(s))
    assert got["roc_auc"] == pytest.approx(roc_auc_by_ranks(y, s), abs=1e-12)
    assert got["ap"] == pytest.approx(ap_by_definition(y, s), abs=1e-12)
    assert 0.75 < got["roc_auc"] < 0.95


def test_perfect_reversed_and_random_detectors():
    y = np.r_[np.zeros(950), np.ones(50)].astype(int)
    assert detection_scores(y, y * 2.0) == {"roc_auc": 1.0, "ap": 1.0, "prevalence": 0.05}
    assert detection_scores(y, -y)["roc_auc"] == 0.0
    rng = np.random.default_rng(0)
    aps = [detection_scores(y, rng.random(1000))["ap"] for _ in range(50)]
    assert np.mean(aps) == pytest.approx(0.05, abs=0.02)  # random scores: AP is about the prevalence


def test_bad_input_is_a_clear_error():
    with pytest.raises(UserError, match="3 labels but 2 scores"):
        detection_scores([0, 1, 1], [0.1, 0.2])
    with pytest.raises(UserError, match="NaN"):
        detection_scores([0, 1], [0.1, float("nan")])
    with pytest.raises(UserError, match="both 0"):
        detection_scores([0, 0, 0], [0.1, 0.2, 0.3])


def test_normal_only_split():
    y = np.r_[np.zeros(900), np.ones(100)].astype(int)
    np.random.default_rng(0).shuffle(y)
    split = normal_only_split(y, test_fraction=0.5, val_fraction=0.1, seed=3)
    assert (y[split.train] == 0).all() and (y[split.val] == 0).all()  # a detector never sees anomalies
    assert set(np.flatnonzero(y == 1)) <= set(split.test)
    everything = np.r_[split.train, split.val, split.test]
    assert len(everything) == len(y) and set(everything) == set(range(len(y)))  # disjoint, complete
    assert (len(split.train), len(split.val), len(split.test)) == (405, 45, 550)
    again, other = normal_only_split(y, seed=3), normal_only_split(y, seed=4)
    assert np.array_equal(again.test, split.test) and not np.array_equal(other.test, split.test)
    assert "100 anomalies, 18.2%" in split.describe(y)
    with pytest.raises(UserError, match="needs anomalies"):
        normal_only_split(np.zeros(10))


def test_column_scaler_uses_the_rows_it_was_fitted_on():
    x = torch.randn(500, 3) * torch.tensor([1.0, 5.0, 0.0]) + torch.tensor([2.0, -1.0, 7.0])
    scale = ColumnScaler.fit(x[:400])
    z = scale(x[:400])
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(0)[:2], torch.ones(2), atol=1e-5) and torch.all(z[:, 2] == 0)  # constant


def planted_outliers(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = np.zeros(n, dtype=int)
    y[:30] = 1
    x[:30] += rng.choice([-6.0, 6.0], size=(30, 5))  # far from the cloud
    return x, y


def test_isolation_forest_scores_the_outliers_highest():
    x, y = planted_outliers()
    scores = isolation_forest_scores(x[y == 0], x, seed=0)
    assert scores.shape == (len(x),)
    assert scores[:30].min() > np.median(scores[30:])  # higher = more anomalous
    split = normal_only_split(y, seed=0)
    result = isolation_forest_baseline(x, y, split, seeds=(0, 1))
    assert result["roc_auc"] > 0.99 and result["ap"] > 0.95
    assert result["prevalence"] == pytest.approx(30 / len(split.test))


@pytest.mark.needs_data
def test_isolation_forest_on_odds_cardio_matches_the_reference():
    """The lead measured AP 0.58, ROC-AUC 0.93 fitting and scoring all rows (mean of 3-10 seeds)."""
    require_dataset("odds_cardio")
    from dlkit.data import load_dataset

    data = load_dataset("odds_cardio", "all")
    result = isolation_forest_baseline(data.x, data.y, seeds=(0, 1, 2))
    assert result["ap"] == pytest.approx(0.58, abs=0.06)
    assert result["roc_auc"] == pytest.approx(0.93, abs=0.03)
