"""How fast does the fraud detector's server answer? POST /score under concurrent load.

Starts ``python -m projects.fraud_detector serve`` on a free port (a given release, or an MLP trained for
a few steps on SYNTHETIC transactions and exported into a temporary folder), warms it up, then sends
``--requests`` POST /score at ``--concurrency``, each with ``--rows`` transactions (1: a single
transaction; more: a batch). Prints the hardware, errors (must be 0), latency percentiles and
requests (and rows) per second; client and server share the machine's cores.

    flock /tmp/dlkit-measure.lock python benchmarks/fraud_serve_load.py --requests 2000 --concurrency 16
    ... --rows 100                                     # batches of 100 transactions
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import report, run_load  # noqa: E402  (the image benchmark's helpers)


def quick_release(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from projects.fraud_detector import export, train

    train.main(
        ["--quick", "--model", "mlp", "--runs-dir", str(folder), "--run-name", "mlp", "--max-steps", "50"]
    )
    export.main(["--run-dir", str(folder / "mlp"), "--no-onnx"])
    return folder / "mlp" / "release"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a release folder (default: a quick MLP on synthetic data)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1, help="transactions per request")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="the server's micro-batch limit (1: none)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole load")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dlkit.tabular import synthetic_transactions

    data = synthetic_transactions(max(args.rows, 1000), seed=3)
    rows = [dict(zip(data.features[1:], map(float, r), strict=True)) for r in data.x[:, 1:].tolist()]
    body = rows[0] if args.rows == 1 else {"transactions": rows[: args.rows]}
    content = json.dumps(body).encode()

    async def send(client: httpx.AsyncClient, i: int) -> str | None:
        r = await client.post("/score", content=content, headers={"content-type": "application/json"})
        ok = r.status_code == 200 and ("score" in r.json() or len(r.json().get("results", [])) == args.rows)
        return None if ok else f"HTTP {r.status_code}: {r.text[:200]}"

    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else quick_release(Path(tmp))
        result = run_load("fraud_detector", release, send, args)
    name = (
        str(release)
        if args.release
        else "an MLP (default sizes) trained briefly on SYNTHETIC data, temporary"
    )
    what = f"{args.rows} transaction(s) of 29 features, {len(content):,} bytes"
    status = report(result, args, name, what)
    if args.rows > 1:
        print(f"{args.rows * len(result['latencies']) / result['wall']:,.0f} transactions/s")
    return status


if __name__ == "__main__":
    sys.exit(main())
