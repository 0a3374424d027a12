"""How does the recommender's ranking model scale? Training throughput and peak memory as the data grows,
and top-k latency over a large catalogue.

For each size (``--sizes``): MovieLens latest-small itself when it is on the data path, then generated
interaction sets with a given number of users, items and ratings (item popularity Zipf-like, users'
counts heavy-tailed, stars 0.5-5: the shape of MovieLens, not its tastes). Each size runs in a fresh
process (so its peak resident memory, ``ru_maxrss``, is its own): it builds the training histories,
the ranker of ``projects.recommendation_system`` (its neighbour table drawn at random for the generated
sets: the cosine neighbours of latest-small cost a sparse X^T X, timed separately) and trains
``--steps`` optimizer steps with ``dlkit.train.train_loop`` exactly as ``train --model ranker`` does
(batches of 64 users built on the device, 2,048 sampled negatives), after 3 warm-up steps. Printed:
ratings (interactions) per second of training, users per second, peak memory. Then the top-k latency:
one user's forward pass over all items plus ``dlkit.ranking.top_k`` with their rated items left out.

    python benchmarks/recommendation_scale.py                          # latest-small, ml-1m-like, ml-25m-like
    python benchmarks/recommendation_scale.py --sizes 162541x59047x25000095 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlkit.device import cpu_name  # noqa: E402

# users x items x ratings: ml-1m's and ml-25m's counts
SIZES = ("small", "6040x3706x1000209", "162541x59047x25000095")


def generated(num_users: int, num_items: int, num_ratings: int, seed: int = 0):  # noqa: ANN201
    """Training histories (CSR by user) of a made-up interaction set of the given counts."""
    from projects.recommendation_system.data import Histories

    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, num_users) + 1.0  # heavy-tailed activity, at least one rating each
    counts = np.maximum(1, np.round(weights / weights.sum() * num_ratings)).astype(np.int64)
    counts = np.minimum(counts, num_items // 2)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    popularity /= popularity.sum()
    items = rng.choice(num_items, size=int(counts.sum()), p=popularity)  # repeats within a user are rare
    stars = rng.integers(1, 11, len(items)).astype(np.float32) / 2
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return Histories(torch.from_numpy(indptr), torch.from_numpy(items), torch.from_numpy(stars), num_items)


def one_size(size: str, steps: int, threads: int) -> dict[str, float | str]:
    """Build and train one size in this process; the numbers as a dict."""
    from dlkit.train import Budget, train_loop
    from projects.recommendation_system.data import histories, load_ratings, protocol_splits
    from projects.recommendation_system.models import Ranker, RankerBatches, ranker_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    neighbours_seconds = float("nan")
    if size == "small":
        data = load_ratings("movielens_small")
        train = histories(data, protocol_splits(data, "random").fit)
        model = Ranker(train.num_items, 200)
        t1 = time.perf_counter()
        model.init_from(train.csr())
        neighbours_seconds = time.perf_counter() - t1
        name = "MovieLens latest-small (fit part)"
    else:
        users, items, ratings = (int(v) for v in size.split("x"))
        train = generated(users, items, ratings)
        model = Ranker(train.num_items, 200)
        model.neighbours.copy_(torch.randint(train.num_items, model.neighbours.shape))
        name = f"generated {users:,} users x {items:,} items"
    build_seconds = time.perf_counter() - t0
    batches = RankerBatches(train, 64, 0.0, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    common = {
        "loss_fn": ranker_loss(2048),
        "device": "cpu",
        "amp": False,
        "progress": False,
        "verbose": False,
    }
    train_loop(model, optimizer, batches, budget=Budget(steps=3), **common)  # warm-up
    seen = {"ratings": 0, "users": 0}

    def counted(epoch: int):  # noqa: ANN202
        for x, y in batches(epoch):
            seen["ratings"] += int((y > 0).sum())
            seen["users"] += len(y)
            yield x, y

    state = train_loop(model, optimizer, counted, budget=Budget(steps=steps), **common)
    # top-k over the whole catalogue for one user with 100 ratings (or all they have)
    from dlkit.ranking import top_k

    user = int(torch.argmax((train.indptr[1:] - train.indptr[:-1]).clamp(max=100)))
    row = train.matrix(torch.tensor([user]))
    model.eval()
    latencies = []
    with torch.no_grad():
        for _ in range(30):
            t = time.perf_counter()
            top_k(model(row), 10, exclude=row > 0)
            latencies.append(time.perf_counter() - t)
    return {
        "data": name,
        "users": train.num_users,
        "items": train.num_items,
        "ratings": len(train.items),
        "build_seconds": round(build_seconds, 1),
        "neighbours_seconds": round(neighbours_seconds, 1),
        "steps": state.step,
        "train_seconds": round(state.seconds, 2),
        "ratings_per_second": seen["ratings"] / state.seconds,
        "users_per_second": seen["users"] / state.seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "topk_ms_p50": 1000 * float(np.median(latencies)),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="'small' or USERSxITEMSxRATINGS")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps timed per size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one size, print its JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.steps, args.threads)))
        return 0
    print(f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.2f} before")  # fmt: skip
    for size in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            size,
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DLKIT_PROGRESS": "0"})
        if proc.returncode != 0:
            print(f"{size}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['data']}: {r['users']:,} users, {r['items']:,} items, {r['ratings']:,} ratings, "
            f"{r['parameters']:,} parameters; built in {r['build_seconds']} s"
            + (
                f" (cosine neighbours {r['neighbours_seconds']} s)"
                if r["neighbours_seconds"] == r["neighbours_seconds"]
                else ""
            )
            + f"; {r['steps']} steps in {r['train_seconds']} s: {r['ratings_per_second']:,.0f} ratings/s, "
            f"{r['users_per_second']:,.0f} users/s; peak memory {r['peak_rss_mib']:,.0f} MiB; "
            f"top-10 over {r['items']:,} items for one user: {r['topk_ms_p50']:.2f} ms (median of 30)"
        )
    print(f"load average {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
