"""The fraud detector's supervised models on the labelled anomaly sets: the MLP against logistic regression.

Each set is split at random, stratified: 70% train, 10% validation (keep-best on validation AUPRC and
the cost threshold), 20% test; AP (AUPRC) and ROC-AUC on the test rows, mean over seeds. Both models
are trained by the project's own code (``projects.fraud_detector.train.fit_detector``) with the train
command's defaults: class-weighted cross-entropy (``--loss weighted``), 3,000 steps (or 100 epochs) at most.
``mlp_focal`` is the MLP with the focal loss instead. Resumable like ``fraud_anomaly_sets.py``.

    flock /tmp/dlkit-measure.lock env DLKIT_DATA=../shared/data \\
        python benchmarks/fraud_supervised.py --seeds 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fraud_anomaly_sets import load_results, table  # noqa: E402

from dlkit.anomaly import detection_scores  # noqa: E402
from dlkit.data import ANOMALY_SETS, locate  # noqa: E402
from dlkit.device import cpu_name  # noqa: E402
from projects.fraud_detector.data import load_fraud_data, split_rows  # noqa: E402
from projects.fraud_detector.train import fit_detector, make_config  # noqa: E402

DETECTORS = {
    "logistic": {"model": "logistic"},
    "mlp": {"model": "mlp"},
    "mlp_focal": {"model": "mlp", "loss": "focal"},
}


def run_one(name: str, detector: str, seed: int, data: Any) -> dict[str, Any]:
    cfg = make_config(data=name, split="random", seed=seed, **DETECTORS[detector])
    torch.manual_seed(seed)
    split = split_rows(data, "random", seed=seed)
    start = time.perf_counter()
    scorer, state, info = fit_detector(cfg, data, split, torch.device("cpu"), verbose=False)
    fit_seconds = time.perf_counter() - start
    with torch.no_grad():
        scores = scorer(data.x[split.test]).numpy()
    result = detection_scores(data.y[split.test].numpy(), scores)
    return {"set": name, "detector": detector, "seed": seed, "ap": result["ap"], "roc_auc": result["roc_auc"],
            "prevalence": result["prevalence"], "rows": len(data), "fit_seconds": fit_seconds,
            "steps": state.step, "threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(ANOMALY_SETS), help="comma-separated names (dlkit.data)")
    p.add_argument("--detectors", default=",".join(DETECTORS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(ROOT / "benchmarks/results/fraud_supervised.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = load_results(path)
    done = {(r["set"], r["detector"], r["seed"]) for r in results}
    sets, detectors = args.sets.split(","), args.detectors.split(",")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{date.today()}  {cpu_name()}; torch {torch.__version__}, {args.threads} thread(s); "
          f"seeds 0..{args.seeds - 1}; load {load}", flush=True)  # fmt: skip
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
                result = run_one(name, detector, seed, data)
                results.append(result)
                with path.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(
                    f"{name:22s} {detector:10s} seed {seed}: test AP {result['ap']:.3f} "
                    f"ROC {result['roc_auc']:.3f} fit {result['fit_seconds']:.1f} s",
                    flush=True,
                )
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(table(results, sets, detectors))


if __name__ == "__main__":
    main()
