"""How fast does the sentiment analyzer's server answer? POST /predict under concurrent load.

Starts ``python -m projects.sentiment_analyzer serve`` on a free port of 127.0.0.1 (a given release, or
a quick nbsvm trained on synthetic reviews and released into a temporary folder), sends a few warm-up
requests, then ``--requests`` POST /predict ``{"text": ...}`` at ``--concurrency`` from an httpx async
client, each with a review of about ``--words`` words; each answer carries its evidence (the top 5
n-grams each way, the server's default). Every request has a timeout and the whole run a
time limit. It prints the hardware, the errors (must be 0: the exit status is 1 otherwise), latency
percentiles and requests per second. Client and server share the machine's cores.

    python benchmarks/sentiment_serve_load.py [--release DIR] [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import report, run_load  # noqa: E402  (the image benchmark's helpers)


def quick_release(folder: Path) -> Path:
    """A quick nbsvm run on synthetic reviews, exported without ONNX: a small real model."""
    sys.path.insert(0, str(ROOT))
    from projects.sentiment_analyzer import export, train

    train.main(["--quick", "--runs-dir", str(folder), "--run-name", "run"])
    export.main(["--run-dir", str(folder / "run"), "--out", str(folder / "release"), "--no-onnx"])
    return folder / "release"


def reviews(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` made-up reviews of about ``words`` words (the size of a typical IMDB review: 230 words)."""
    from projects.sentiment_analyzer.data import NEGATIVE, NEUTRAL, POSITIVE

    rng = random.Random(seed)
    vocab = POSITIVE + NEGATIVE + NEUTRAL * 3
    return [" ".join(rng.choice(vocab) for _ in range(words)) + "." for _ in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a release folder (default: a quick nbsvm on synthetic reviews)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--words", type=int, default=230, help="words per review sent (IMDB's median: ~174)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="the server's micro-batch limit (1: none)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole load")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    texts = reviews(200, args.words)

    async def send(client: httpx.AsyncClient, i: int) -> str | None:
        r = await client.post("/predict", json={"text": texts[i % len(texts)]})
        return (
            None
            if r.status_code == 200 and "label" in r.json() and "evidence" in r.json()
            else f"HTTP {r.status_code}: {r.text[:200]}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else quick_release(Path(tmp))
        result = run_load("sentiment_analyzer", release, send, args)
    size = sum(len(t.encode()) for t in texts) / len(texts)
    name = str(release) if args.release else "quick nbsvm on synthetic reviews, temporary"
    return report(result, args, name, f"JSON reviews of {args.words} words, ~{size:,.0f} bytes")


if __name__ == "__main__":
    sys.exit(main())
