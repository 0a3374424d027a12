"""Score a trained run on its test rows (once, at the end) or validation rows, next to the baselines.

    python -m projects.fraud_detector evaluate --run-dir runs/fraud_detector/creditcard-mlp
    python -m projects.fraud_detector evaluate --run-dir runs/fraud_detector/creditcard-mlp --split val

Reports AUPRC (average precision), ROC-AUC, precision and recall at alert budgets of 0.1% and 1% of the
rows, and what the run's threshold (chosen on the validation rows) does on these rows: flagged rows,
frauds caught and missed, the cost. The baselines, on the same rows with the same scaling: scikit-learn's
IsolationForest and LocalOutlierFactor (fitted on the training rows without labels; LOF on at most
``--lof-rows`` of them). A supervised model also gets its calibration curve (calibration.png).
Everything goes to ``<run-dir>/evaluation_<split>.json`` and the figures beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlkit.anomaly import detection_scores, isolation_forest_scores
from dlkit.config import flag, parse_config
from dlkit.project import EvalConfig as ProjectEvalConfig
from dlkit.project import trained_run
from dlkit.runs import RunFolder, write_json
from projects.fraud_detector.data import FraudData, Split, load_fraud_data, split_rows
from projects.fraud_detector.metrics import calibration_curve, score_report
from projects.fraud_detector.plots import plot_calibration, plot_precision_recall, plot_scores
from projects.fraud_detector.train import load_run

__all__ = ["EvalConfig", "evaluate_run", "lof_scores", "main", "run_data"]


@dataclass
class EvalConfig(ProjectEvalConfig):
    """AUPRC, ROC-AUC, alert budgets and the run's threshold on its test (or validation) rows."""

    baselines: bool = flag(True, help="also score IsolationForest and LocalOutlierFactor on the same rows")
    lof_rows: int = flag(
        20_000, help="LocalOutlierFactor is fitted on at most this many training rows", min=50
    )


def run_data(info: dict[str, Any]) -> tuple[FraudData, Split]:
    """The rows a run was trained on and its split, made again from model_info.json."""
    spec = info["data"]
    data = load_fraud_data(
        spec["source"],
        quick=spec["quick"],
        data_file=spec["data_file"],
        label_column=spec["label_column"],
        time_column=spec["time_column"],
        drop=tuple(spec["drop"]),
    )
    if data.features != info["preprocessing"]["features"]:
        raise_changed(info, data)
    split = split_rows(
        data,
        spec["split"],
        test_fraction=spec["test_fraction"],
        val_fraction=spec["val_fraction"],
        seed=spec["seed"],
    )
    return data, split


def raise_changed(info: dict[str, Any], data: FraudData) -> None:
    from dlkit.errors import UserError

    raise UserError(
        f"{data.source} no longer has the features this run was trained on "
        f"({', '.join(info['preprocessing']['features'])}): was the file changed?"
    )


def lof_scores(z_fit: np.ndarray, z_score: np.ndarray | None, *, max_rows: int, seed: int = 0) -> np.ndarray:
    """LocalOutlierFactor's anomaly scores (higher = more anomalous), fitted on at most ``max_rows`` rows
    of ``z_fit``: of ``z_score`` (novelty mode), or of ``z_fit`` itself when ``z_score`` is None."""
    from sklearn.neighbors import LocalOutlierFactor

    if z_score is None and len(z_fit) <= max_rows:
        lof = LocalOutlierFactor(n_neighbors=20).fit(z_fit)
        return -lof.negative_outlier_factor_
    rows = np.random.default_rng(seed).permutation(len(z_fit))[:max_rows]
    lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(z_fit[rows])
    return -lof.score_samples(z_fit if z_score is None else z_score)


def evaluate_run(cfg: EvalConfig) -> dict[str, Any]:
    run = trained_run(cfg.run_dir)
    scorer, info = load_run(str(run.path))
    data, split = run_data(info)
    rows = split.test if cfg.split == "test" else split.val
    x, y = data.x[rows], data.y[rows]
    with torch.no_grad():
        s = torch.cat([scorer(b) for b in x.split(65_536)])
    costs, threshold = info["costs"], info["threshold"]["value"]
    result: dict[str, Any] = {
        "rows": f"the {cfg.split} rows of {data.name}: {len(rows):,}",
        "threshold": info["threshold"],
        "costs": costs,
    }
    if not data.labelled or not 0 < int(y.sum()) < len(y):
        result["note"] = "these rows have no labels (or no frauds): only the score distribution is shown"
        run.savefig(
            plot_scores(s, y, threshold, title=f"scores, {data.name}", labelled=False), f"{cfg.split}_scores"
        )
        return result
    result["model"] = score_report(
        y, s, threshold=threshold, cost_miss=costs["miss"], cost_review=costs["review"]
    )
    curves = {info["net"]["model"]: (y, s)}
    if cfg.baselines:
        result["baselines"] = baselines(scorer, data, split, rows, cfg.lof_rows, curves)
    if scorer.kind == "probability":
        result["calibration"] = calibration_curve(y, s)
        run.savefig(
            plot_calibration(result["calibration"], title=f"{info['net']['model']}, {cfg.split} rows"),
            "calibration",
        )
    run.savefig(plot_scores(s, y, threshold, title=f"{cfg.split} scores, {data.name}"), f"{cfg.split}_scores")
    run.savefig(
        plot_precision_recall(curves, float(y.float().mean()), title=f"{cfg.split} rows, {data.name}"),
        f"{cfg.split}_precision_recall",
    )
    return result


def baselines(
    scorer: Any, data: FraudData, split: Split, rows: np.ndarray, lof_rows: int, curves: dict[str, Any]
) -> dict[str, Any]:
    """IsolationForest and LOF on the run's scaled features, fitted on the training rows, scoring ``rows``."""
    with torch.no_grad():
        z_fit = scorer.preprocess(data.x[split.train]).numpy()
        z_eval = scorer.preprocess(data.x[rows]).numpy()
    y = data.y[rows].numpy()
    out = {}
    for name, fn in (
        ("isolation_forest", lambda: isolation_forest_scores(z_fit, z_eval, seed=0)),
        ("local_outlier_factor", lambda: lof_scores(z_fit, z_eval, max_rows=lof_rows)),
    ):
        start = time.perf_counter()
        s = fn()
        out[name] = {**detection_scores(y, s), "seconds": time.perf_counter() - start}
        curves[name] = (y, s)
    return out


def _print(result: dict[str, Any]) -> None:
    print(result["rows"])
    if "model" not in result:
        print(result["note"])
        return
    m = result["model"]
    print(f"  model: AUPRC {m['ap']:.4f}, ROC-AUC {m['roc_auc']:.4f} (prevalence {m['prevalence']:.4f})")
    for name, b in m["alert_budgets"].items():
        print(
            f"  {name} reviewed ({b['rows']:,} rows): precision {b['precision']:.3f}, "
            f"recall {b['recall']:.3f}"
        )
    t = m["at_threshold"]
    print(
        f"  threshold {t['threshold']:.4g}: {t['flagged']:,} flagged, {t['frauds_caught']} caught, "
        f"{t['frauds_missed']} missed, cost {t['cost']:,.0f} ({t['cost_per_1000_rows']:.2f} per 1,000 rows)"
    )
    for name, b in result.get("baselines", {}).items():
        print(f"  {name}: AUPRC {b['ap']:.4f}, ROC-AUC {b['roc_auc']:.4f} ({b['seconds']:.1f} s)")
    if "calibration" in result:
        print("  calibration: see calibration.png")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(EvalConfig, argv)
    result = evaluate_run(cfg)
    _print(result)
    write_json(RunFolder(cfg.run_dir) / f"evaluation_{cfg.split}.json", result)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
