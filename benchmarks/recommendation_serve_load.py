"""How fast does the recommender's server answer? A mix of its routes under concurrent load.

Starts ``python -m projects.recommendation_system serve`` on a free port of 127.0.0.1 (a given release,
or a quick ranker trained on the synthetic interactions and released into a temporary folder), sends
32 warm-up requests, then ``--requests`` requests at ``--concurrency`` from an httpx async client,
in turn: ``GET /users/{id}/recommendations?k=10`` (a known user), ``POST /recommendations`` with 5
liked movie ids (a visitor), ``GET /movies/{id}/similar?k=10`` and ``GET /movies/search?q=...``.
Every request has a timeout and the whole run a time limit. It prints the hardware, the errors (must
be 0: the exit status is 1 otherwise), latency percentiles and requests per second. Client and server
share the machine's cores.

    python benchmarks/recommendation_serve_load.py [--release DIR] [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import percentile, run_load  # noqa: E402  (the image benchmark's helpers)

from dlkit.device import cpu_name  # noqa: E402

SEARCHES = ("star wars", "toy", "matrix", "godfather", "love", "synthetic movie 1", "the", "man")


def quick_release(folder: Path) -> Path:
    """A quick ranker on the synthetic interactions, exported without ONNX: a small real model."""
    sys.path.insert(0, str(ROOT))
    from projects.recommendation_system import export, train

    train.main(["--quick", "--model", "ranker", "--runs-dir", str(folder), "--run-name", "run"])
    export.main(["--run-dir", str(folder / "run"), "--out", str(folder / "release"), "--no-onnx"])
    return folder / "release"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a release folder (default: a quick ranker on synthetic data)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="the server's micro-batch limit (1: none)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole load")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else quick_release(Path(tmp))
        meta = json.loads((release / "model.json").read_text())
        num_users, movie_ids = meta["sizes"]["users"], meta["items"]["movie_ids"]
        rng = random.Random(0)
        rated = [movie_ids[i] for i in range(len(movie_ids))]
        plan = [
            (i % 4, rng.randint(1, num_users), rng.sample(rated, 5), SEARCHES[i % len(SEARCHES)])
            for i in range(args.requests + 64)
        ]

        async def send(client: httpx.AsyncClient, i: int) -> str | None:
            kind, user, liked, query = plan[i % len(plan)]
            if kind == 0:
                r, key = (
                    await client.get(f"/users/{user}/recommendations", params={"k": 10}),
                    "recommendations",
                )
            elif kind == 1:
                r, key = (
                    await client.post("/recommendations", json={"liked": liked, "k": 10}),
                    "recommendations",
                )
            elif kind == 2:
                r, key = await client.get(f"/movies/{liked[0]}/similar", params={"k": 10}), "similar"
            else:
                r, key = await client.get("/movies/search", params={"q": query, "limit": 10}), "movies"
            if r.status_code == 404 and kind == 2:  # a movie never rated in training: a reasoned 404 is right
                return None
            return (
                None if r.status_code == 200 and key in r.json() else f"HTTP {r.status_code}: {r.text[:200]}"
            )

        result = run_load("recommendation_system", release, send, args)
    latencies, errors, wall = result["latencies"], result["errors"], result["wall"]
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, server workers {args.workers}, "
        f"max batch {args.max_batch}, load average {result['load_before']:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    print(f"release: {args.release or 'quick ranker on synthetic interactions, temporary'} "
          f"({meta['architecture']['model']}, {len(movie_ids):,} movies, {num_users:,} users)")  # fmt: skip
    print(
        f"{len(latencies)} requests (user top-10, visitor top-10 from 5 liked, similar top-10, title search, "
        f"in turn), concurrency {args.concurrency}: errors {len(errors)}"
    )
    p50, p90, p99 = (percentile(latencies, q) * 1000 for q in (50, 90, 99))
    print(
        f"latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"{len(latencies) / wall:.1f} requests/s over {wall:.1f} s"
    )
    for message in errors[:5]:
        print("  error:", message)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
