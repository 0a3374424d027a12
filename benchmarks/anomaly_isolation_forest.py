"""IsolationForest on the ODDS / ADBench anomaly sets: the baseline every detector in the course faces.

Two protocols, mean over seeds: "all rows" fits and scores every row (as ADBench's tables and the
issue's reference numbers do: AP cardio 0.58, mnist 0.27, thyroid 0.53, annthyroid 0.32, mammography
0.20); "normal-only" is ``dlkit.anomaly.normal_only_split`` (fit on normal training rows, score half of
the normal rows and every anomaly), the split advanced lesson 01 and the fraud project use. The
prevalence is the AP of random scores.

    DLKIT_DATA=../shared/data python benchmarks/anomaly_isolation_forest.py --seeds 5
"""

from __future__ import annotations

import argparse
import time
from datetime import date

from dlkit.anomaly import isolation_forest_baseline, normal_only_split
from dlkit.data import ANOMALY_SETS, load_dataset, locate
from dlkit.device import cpu_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(ANOMALY_SETS), help="comma-separated names (dlkit.data)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-rows", type=int, default=100_000, help="skip larger sets (donors, http)")
    args = p.parse_args()
    print(f"{date.today()}  {cpu_name()}; seeds 0..{args.seeds - 1}; IsolationForest(n_estimators=100)")
    print(f"{'set':22s} {'rows':>8s} {'feat':>5s} {'prev':>6s} | {'all rows: AP':>12s} {'ROC':>6s} | "
          f"{'normal-only: AP':>15s} {'ROC':>6s} {'prev':>6s} | {'s':>5s}")  # fmt: skip
    for name in args.sets.split(","):
        if locate(name) is None:
            print(f"{name:22s} not found on the data search path: skipped")
            continue
        data = load_dataset(name, "all")
        if len(data) > args.max_rows:
            print(f"{name:22s} {len(data):8,d} rows > --max-rows: skipped")
            continue
        start, seeds = time.perf_counter(), range(args.seeds)
        whole = isolation_forest_baseline(data.x, data.y, seeds=seeds)
        split = [
            isolation_forest_baseline(data.x, data.y, normal_only_split(data.y, seed=s), seeds=(s,))
            for s in seeds
        ]
        normal = {k: sum(r[k] for r in split) / len(split) for k in split[0]}
        head = f"{name:22s} {len(data):8,d} {data.x.shape[1]:5d} {whole['prevalence']:6.3f}"
        seconds = time.perf_counter() - start
        print(f"{head} | {whole['ap']:12.3f} {whole['roc_auc']:6.3f} | {normal['ap']:15.3f} "
              f"{normal['roc_auc']:6.3f} {normal['prevalence']:6.3f} | {seconds:5.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
