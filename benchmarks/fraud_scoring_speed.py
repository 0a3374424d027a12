"""How fast does a fraud detector score transactions on the CPU? Goal: >= 100,000 rows/s.

Times the release's scorer (raw features -> score, the scaling included) three ways on credit-card-shaped
rows (29 features; the model's default sizes; the weights do not change the cost):

- PyTorch: ``FraudPredictor.score`` on batches of 1,000 / 10,000 / 65,536 rows;
- ONNX Runtime: the release's model.onnx on the same batches;
- the predict command's pipeline: a 284,807-row CSV (the size of the credit-card data) read in chunks,
  scored and written (``score_file``), end to end.

Each model is trained for a few steps on SYNTHETIC transactions and exported first (the cost does not
depend on what it learnt). Run it under the lock, with the threads stated:

    flock /tmp/dlkit-measure.lock python benchmarks/fraud_scoring_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlkit.device import cpu_name  # noqa: E402
from dlkit.export import onnx_session  # noqa: E402
from dlkit.tabular import synthetic_transactions, write_table  # noqa: E402
from projects.fraud_detector import export, train  # noqa: E402
from projects.fraud_detector.predict import FraudPredictor, score_file  # noqa: E402


def rows_per_second(fn, x: np.ndarray, batch: int, min_seconds: float = 1.0) -> float:  # noqa: ANN001
    """Rows scored per second by ``fn`` on batches of ``batch`` rows of ``x``, best of 3 runs of at least
    ``min_seconds``."""
    batches = [x[i : i + batch] for i in range(0, len(x) - batch + 1, batch)] or [x]
    fn(batches[0])  # warm-up
    best = 0.0
    for _ in range(3):
        rows, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            for b in batches:
                fn(b)
                rows += len(b)
        best = max(best, rows / (time.perf_counter() - start))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="autoencoder,mlp,deep_svdd,logistic")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{date.today()}  {cpu_name()}; torch {torch.__version__}, {args.threads} thread(s); load {load}")
    data = synthetic_transactions(284_807, 0.0017, seed=1)
    x = data.x[:, 1:].numpy()  # without Time, as the releases read them
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        csv_path = write_table(root / "transactions.csv", data.x.numpy(), data.features, data.y.numpy())
        print(f"{csv_path.stat().st_size / 1e6:.0f} MB CSV of {len(x):,} rows")
        for model in args.models.split(","):
            train.main(["--quick", "--model", model, "--runs-dir", str(root), "--run-name", model,
                        "--max-steps", "50"])  # fmt: skip
            export.main(["--run-dir", str(root / model)])
            predictor = FraudPredictor.from_release(root / model / "release", "cpu")
            assert isinstance(predictor, FraudPredictor)
            session = onnx_session(root / model / "release" / "model.onnx", args.threads)

            def run_onnx(b: np.ndarray, session=session) -> None:  # noqa: ANN001
                session.run(None, {"features": b})

            line = [f"{model:12s}"]
            for batch in (1_000, 10_000, 65_536):
                torch_rate = rows_per_second(predictor.score, x, batch)
                onnx_rate = rows_per_second(run_onnx, x, batch)
                line.append(
                    f"batch {batch:>6,}: torch {torch_rate / 1e3:7.0f}k, onnx {onnx_rate / 1e3:7.0f}k rows/s"
                )
            start = time.perf_counter()
            summary = score_file(predictor, csv_path, root / "scores.csv", show_progress=False)
            seconds = time.perf_counter() - start
            rate = summary["rows_scored"] / seconds
            line.append(f"predict (read CSV, score, write): {rate / 1e3:.0f}k rows/s ({seconds:.1f} s)")
            print("\n  ".join(line), flush=True)
    print(f"load after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
