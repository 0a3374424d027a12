"""The fraud detector's unsupervised models against IsolationForest on the 15 ODDS/ADBench anomaly sets.

One protocol for every detector, the one of the issue's IsolationForest numbers (and of ADBench's
unsupervised tables): fit on ALL rows of a set without labels, score the same rows, AP (AUPRC) and
ROC-AUC against the labels, mean over seeds. Our models are trained by the project's own code
(``projects.fraud_detector.train.fit_detector`` with ``--split all``; every hyperparameter is the
train command's default, one configuration for all 15 sets); IsolationForest is scikit-learn's
(``n_estimators=100``, raw features, as ``dlkit.anomaly.isolation_forest_baseline``). Times are wall
seconds of fitting (ours: the training loop plus scaling and threshold) and of scoring all rows.

Resumable: each (set, detector, seed) result is appended to ``--results`` (JSON lines) as it finishes
and skipped when run again, so the 15 sets can be measured one at a time (``--sets``).

    flock /tmp/dlkit-measure.lock env DLKIT_DATA=../shared/data \\
        python benchmarks/fraud_anomaly_sets.py --seeds 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlkit.anomaly import detection_scores  # noqa: E402
from dlkit.data import ANOMALY_SETS, locate  # noqa: E402
from dlkit.device import cpu_name  # noqa: E402
from projects.fraud_detector.data import load_fraud_data, split_rows  # noqa: E402
from projects.fraud_detector.train import fit_detector, make_config  # noqa: E402

DETECTORS = ("isolation_forest", "autoencoder", "deep_svdd")


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_one(name: str, detector: str, seed: int, data: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    x, y = data.x, data.y
    if detector == "isolation_forest":
        start = time.perf_counter()
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=100, random_state=seed).fit(x.numpy())
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = -forest.score_samples(x.numpy())
        score_seconds = time.perf_counter() - start
    else:
        cfg = make_config(data=name, model=detector, split="all", seed=seed, **overrides)
        torch.manual_seed(seed)
        split = split_rows(data, "all", seed=seed)
        start = time.perf_counter()
        scorer, state, info = fit_detector(cfg, data, split, torch.device("cpu"), verbose=False)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            scores = torch.cat([scorer(b) for b in x.split(65_536)]).numpy()
        score_seconds = time.perf_counter() - start
    result = detection_scores(y.numpy(), scores)
    return {
        "set": name,
        "detector": detector,
        "seed": seed,
        "ap": result["ap"],
        "roc_auc": result["roc_auc"],
        "prevalence": result["prevalence"],
        "rows": len(y),
        "fit_seconds": fit_seconds,
        "score_seconds": score_seconds,
        "threads": torch.get_num_threads(),
    }


def table(results: list[dict[str, Any]], sets: list[str], detectors: list[str]) -> str:
    def mean(name: str, det: str, key: str) -> float | None:
        values = [r[key] for r in results if r["set"] == name and r["detector"] == det]
        return float(np.mean(values)) if values else None

    columns = [f"{d} {what}" for what in ("AP", "ROC", "fit s") for d in detectors]
    head = f"| set | rows | {' | '.join(columns)} | best AP |"
    lines = [head, "|" + "---|" * (3 * len(detectors) + 3)]
    totals: dict[str, list[float]] = {d: [] for d in detectors}
    for name in sets:
        rows = next((r["rows"] for r in results if r["set"] == name), None)
        if rows is None:
            continue
        aps = {d: mean(name, d, "ap") for d in detectors}
        cells = [f"{aps[d]:.3f}" if aps[d] is not None else "-" for d in detectors]
        cells += [f"{v:.3f}" if (v := mean(name, d, "roc_auc")) is not None else "-" for d in detectors]
        cells += [f"{v:.1f}" if (v := mean(name, d, "fit_seconds")) is not None else "-" for d in detectors]
        known = {d: v for d, v in aps.items() if v is not None}
        best = max(known, key=known.get) if known else "-"  # type: ignore[arg-type]
        for d, v in known.items():
            totals[d].append(v)
        lines.append(f"| {name} | {rows:,} | " + " | ".join(cells) + f" | {best} |")
    means = [f"{np.mean(totals[d]):.3f} ({len(totals[d])} sets)" if totals[d] else "-" for d in detectors]
    lines.append("| **mean** | | " + " | ".join(means) + " |" + " |" * (2 * len(detectors) + 1))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(ANOMALY_SETS), help="comma-separated names (dlkit.data)")
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(ROOT / "benchmarks/results/fraud_anomaly_sets.jsonl"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a train flag other than its default, e.g. --set trim=0.1 (for experiments)",
    )
    args = p.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(args.threads)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(path)
    done = {(r["set"], r["detector"], r["seed"]) for r in results}
    sets, detectors = args.sets.split(","), args.detectors.split(",")
    print(
        f"{date.today()}  {cpu_name()}; torch {torch.__version__}, {args.threads} thread(s); "
        f"seeds 0..{args.seeds - 1}; load {Path('/proc/loadavg').read_text().split()[:3]}",
        flush=True,
    )
    for name in sets:
        if locate(name) is None:
            print(f"{name}: not on the data search path (DLKIT_DATA): skipped", flush=True)
            continue
        data = None
        for detector in detectors:
            for seed in range(args.seeds):
                if (name, detector, seed) in done:
                    continue
                data = data or load_fraud_data(name)
                result = run_one(name, detector, seed, data, overrides)
                result["overrides"] = overrides
                results.append(result)
                with path.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(
                    f"{name:22s} {detector:17s} seed {seed}: AP {result['ap']:.3f} "
                    f"ROC {result['roc_auc']:.3f} fit {result['fit_seconds']:.1f} s, "
                    f"score {result['score_seconds']:.2f} s",
                    flush=True,
                )
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(table(results, sets, detectors))


if __name__ == "__main__":
    main()
