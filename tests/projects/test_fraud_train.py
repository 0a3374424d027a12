"""The fraud detector's pieces against scikit-learn and torchvision (metrics, focal loss, scaling), and its
train command on SYNTHETIC transactions (every model, a user's CSV file, the time split, bad flags)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, require_dataset

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.errors import UserError
from dlkit.tabular import synthetic_transactions, write_table
from projects.fraud_detector import train
from projects.fraud_detector.metrics import (
    alert_budget_metrics,
    at_threshold,
    calibration_curve,
    cost_threshold,
    score_report,
)
from projects.fraud_detector.models import Autoencoder, DeepSVDD, Preprocess, focal_loss, trimmed_mean


def scored_rows(
    seed: int, n: int = 2000, rate: float = 0.02, ties: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    s = rng.normal(size=n) + 2.0 * y
    return y, (np.round(s, 1) if ties else s)


# --- Metrics against scikit-learn and brute force ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_and_roc_auc_are_scikit_learns(seed: int) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = scored_rows(seed, ties=True)
    report = score_report(y, s)
    assert report["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert report["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_precision_and_recall_at_an_alert_budget() -> None:
    from sklearn.metrics import precision_score, recall_score

    y, s = scored_rows(2, n=5000)
    got = alert_budget_metrics(y, s, budgets=(0.001, 0.01, 0.05))
    for budget, name in ((0.001, "top 0.1%"), (0.01, "top 1%"), (0.05, "top 5%")):
        k = math.ceil(budget * len(s))
        flagged = np.zeros(len(s), dtype=int)
        flagged[np.argsort(-s)[:k]] = 1
        assert got[name]["rows"] == k
        assert got[name]["precision"] == pytest.approx(precision_score(y, flagged), abs=1e-12)
        assert got[name]["recall"] == pytest.approx(recall_score(y, flagged), abs=1e-12)
    assert got["top 0.1%"]["precision"] > got["top 5%"]["precision"] > y.mean()  # the top is richer


@pytest.mark.parametrize("costs", [(100.0, 1.0), (10.0, 1.0), (1.0, 5.0)])
def test_the_cost_threshold_is_the_cheapest_of_all(costs: tuple[float, float]) -> None:
    y, s = scored_rows(3, n=800, rate=0.05, ties=True)
    cost_miss, cost_review = costs
    best = cost_threshold(y, s, cost_miss, cost_review)
    candidates = [*np.unique(s), math.inf]
    brute = min(at_threshold(y, s, t, cost_miss, cost_review)["cost"] for t in candidates)
    assert best["cost"] == pytest.approx(brute)
    assert best["cost"] == (best["frauds_missed"] * cost_miss + best["flagged"] * cost_review)
    if costs == (1.0, 5.0):  # a review costs more than the fraud it could catch: flag nothing
        assert best["threshold"] == math.inf and best["flagged"] == 0


def test_the_calibration_curve_is_scikit_learns_quantile_curve() -> None:
    from sklearn.calibration import calibration_curve as sklearn_curve

    rng = np.random.default_rng(4)
    p = rng.beta(0.5, 8, size=3000)
    y = (rng.random(3000) < p).astype(int)
    ours = calibration_curve(y, p, bins=10)
    observed, predicted = sklearn_curve(y, p, n_bins=10, strategy="quantile")
    assert np.allclose(ours["predicted"], predicted) and np.allclose(ours["observed"], observed)
    assert sum(ours["count"]) == 3000


def test_focal_loss_is_torchvisions() -> None:
    from torchvision.ops import sigmoid_focal_loss

    logits = torch.randn(500, dtype=torch.float64) * 3
    y = (torch.rand(500) < 0.1).double()
    for gamma in (0.0, 2.0):
        expected = sigmoid_focal_loss(logits, y, alpha=0.25, gamma=gamma, reduction="mean")
        assert torch.allclose(focal_loss(logits, y, gamma), expected, atol=1e-12)


def test_the_trimmed_mean_leaves_out_the_worst_rows() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0, 200.0, 5.0, 6.0, 7.0, 8.0])
    assert trimmed_mean(values, 0.2) == pytest.approx(4.5)  # 200 and 100 left out
    assert trimmed_mean(values, 0.0) == pytest.approx(values.mean())


def test_scaling_is_robust_and_log_scales_amounts() -> None:
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.normal(10, 2, 5000), rng.lognormal(3, 1.5, 5000), np.full(5000, 7.0)])
    x[:50, 0] = 1e6  # a few huge values do not set the scale
    pre = Preprocess.fit(torch.from_numpy(x).float(), log_columns=[1])
    t = np.c_[x[:, 0], np.log1p(x[:, 1]), x[:, 2]]
    q25, q50, q75 = np.quantile(t, [0.25, 0.5, 0.75], axis=0)
    assert np.allclose(pre.center.numpy(), q50, rtol=1e-4)
    assert np.allclose(pre.scale.numpy()[:2], ((q75 - q25) / 1.349)[:2], rtol=1e-4)
    assert pre.scale[2] == 1.0  # a constant column
    z = pre(torch.from_numpy(x).float())
    assert abs(float(z[50:, 0].std()) - 1.0) < 0.05 and float(z[:50, 0].min()) > 1e5
    assert Preprocess.from_stats(pre.stats(["a", "b", "c"])).state_dict().keys() == pre.state_dict().keys()


def test_the_autoencoder_cannot_reach_beyond_the_typical_range() -> None:
    z = torch.randn(4000, 6)
    ae = Autoencoder(6, hidden=16)
    ae.set_range(z)
    out = ae(torch.randn(100, 6) * 1000)
    assert (out >= ae.low).all() and (out <= ae.high).all()
    assert (ae.high < 4).all() and (ae.low > -4).all()  # 0.5% and 99.5% quantiles of N(0, 1), widened


def test_deep_svdd_has_no_bias_and_a_centre_off_zero() -> None:
    model = DeepSVDD(8, hidden=16)
    model.set_center(torch.randn(1000, 8))
    assert all("bias" not in name for name, _ in model.named_parameters())
    assert (model.center.abs() >= 0.1).all()
    assert model(torch.randn(5, 8)).shape == (5,)


# --- The train command ---------------------------------------------------------------------------------


def run_dir(tmp_path: Path, name: str) -> Path:
    return tmp_path / name


@pytest.mark.parametrize("model", ["autoencoder", "deep_svdd", "mlp", "logistic"])
def test_every_model_trains_in_quick_mode(tmp_path: Path, model: str) -> None:
    info = train.main(
        ["--quick", "--model", model, "--runs-dir", str(tmp_path), "--run-name", model, "--threads", "1"]
    )
    folder = tmp_path / model
    assert {"config.json", "metrics.csv", "checkpoint.pt", "model_info.json", "loss.png"} <= {
        p.name for p in folder.iterdir()
    }
    assert "SYNTHETIC" in info["dataset"] and info["split"].startswith("time-ordered split")
    assert info["data"]["source"] == "synthetic"  # evaluate and export reload these rows, not real ones
    assert (
        info["preprocessing"]["log1p_columns"] == ["Amount"]
        and "Time" not in info["preprocessing"]["features"]
    )
    assert info["threshold"]["how"] == "lowest cost on the validation rows"
    val = info["metrics"]["val"]
    assert val["ap"] > 0.3, val  # the synthetic frauds are shifted: every model finds many of them
    assert json.loads((folder / "model_info.json").read_text())["net"]["model"] == model
    if model in ("autoencoder", "deep_svdd"):
        assert info["score"]["scale"] > 0 and info["score"]["kind"] in ("reconstruction", "distance")
    else:
        assert info["score"]["kind"] == "probability"


def test_the_time_split_tests_on_the_last_rows(tmp_path: Path) -> None:
    from projects.fraud_detector.data import load_fraud_data, split_rows

    data = load_fraud_data("synthetic", quick=True)
    split = split_rows(data, "auto")
    assert data.order[split.train].max() <= data.order[split.val].min()
    assert data.order[split.val].max() <= data.order[split.test].min()
    assert len(split.test) == round(0.2 * len(data))


def test_a_users_csv_file_trains_with_its_own_label_and_time_columns(tmp_path: Path) -> None:
    data = synthetic_transactions(3000, 0.02, seed=3)
    x = data.x.numpy()
    columns = ["ts", *[f"f{i}" for i in range(1, 29)], "amount_eur"]
    path = write_table(tmp_path / "mine.csv", x, columns, data.y.numpy(), label="is_fraud")
    lines = path.read_text().splitlines()
    lines[10] = "oops," + lines[10].split(",", 1)[1]  # a bad row: reported, skipped
    path.write_text("\n".join(lines) + "\n")
    info = train.main(
        [
            "--data",
            "file",
            "--data-file",
            str(path),
            "--label-column",
            "is_fraud",
            "--time-column",
            "ts",
            "--model",
            "logistic",
            "--log-columns",
            "amount_eur",
            "--max-steps",
            "200",
            "--runs-dir",
            str(tmp_path),
            "--run-name",
            "mine",
        ]
    )
    assert info["preprocessing"]["features"] == columns[1:]
    assert info["preprocessing"]["log1p_columns"] == ["amount_eur"]
    assert info["dataset"] == "the file mine.csv" and "2,999" not in info["split"]
    assert info["metrics"]["val"]["ap"] > 0.3


def test_bad_requests_are_user_errors(tmp_path: Path) -> None:
    base = ["--quick", "--runs-dir", str(tmp_path)]
    with pytest.raises(UserError, match="only for unsupervised"):
        train.main([*base, "--model", "mlp", "--split", "all"])
    with pytest.raises(UserError, match="--data-file"):
        train.main([*base, "--data", "file"])
    with pytest.raises(UserError, match="no such feature"):
        train.main([*base, "--log-columns", "Price"])
    path = write_table(
        tmp_path / "nolabel.csv", np.random.default_rng(0).normal(size=(200, 3)), ["a", "b", "c"]
    )
    with pytest.raises(UserError, match="learns from labels"):
        train.main(
            [*base, "--data", "file", "--data-file", str(path), "--label-column", "", "--model", "mlp"]
        )


@pytest.mark.needs_data
def test_the_autoencoder_finds_thyroid_anomalies_on_all_rows(tmp_path: Path) -> None:
    """The benchmark's protocol on one real set, briefly: fit and score every row, no labels in training."""
    require_dataset("adbench_thyroid")
    info = train.main(
        [
            "--data",
            "adbench_thyroid",
            "--split",
            "all",
            "--max-steps",
            "300",
            "--runs-dir",
            str(tmp_path),
            "--run-name",
            "thyroid",
            "--threads",
            "1",
        ]
    )
    val = info["metrics"]["val"]  # a random tenth of the rows, labels used only here
    assert val["ap"] > 10 * val["prevalence"], val  # prevalence 0.025; IsolationForest: AP 0.53
