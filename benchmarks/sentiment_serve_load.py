"""How fast does the sentiment analyzer's server answer? POST /predict under concurrent load.

Starts ``python -m projects.sentiment_analyzer serve`` on a free port of 127.0.0.1 (a given release, or
a quick nbsvm trained on synthetic reviews and released into a temporary folder), sends a few warm-up
requests, then ``--requests`` POST /predict ``{"text": ...}`` at ``--concurrency`` from an httpx async
client, each with a review of about ``--words`` words. Every request has a timeout and the whole run a
time limit. It prints the hardware, the errors (must be 0: the exit status is 1 otherwise), latency
percentiles and requests per second. Client and server share the machine's cores.

    python benchmarks/sentiment_serve_load.py [--release DIR] [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from serve_load import cpu_name, free_port, percentile  # noqa: E402  (the image benchmark's helpers)


def quick_release(folder: Path) -> Path:
    """A quick nbsvm run on synthetic reviews, exported without ONNX: a small real model."""
    sys.path.insert(0, str(ROOT))
    from projects.sentiment_analyzer import export, train

    train.main(["--quick", "--runs-dir", str(folder), "--run-name", "run"])
    export.main(["--run-dir", str(folder / "run"), "--out", str(folder / "release"), "--no-graphs"])
    return folder / "release"


def start_server(release: Path, port: int, workers: int, max_batch: int):  # noqa: ANN201
    import subprocess

    cmd = [sys.executable, "-m", "projects.sentiment_analyzer", "serve", "--release", str(release),
           "--port", str(port), "--workers", str(workers), "--max-batch", str(max_batch),
           "--device", "cpu", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the server did not answer /health within 120 s")


def reviews(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` made-up reviews of about ``words`` words (the size of a typical IMDB review: 230 words)."""
    from projects.sentiment_analyzer.data import NEGATIVE, NEUTRAL, POSITIVE

    rng = random.Random(seed)
    vocab = POSITIVE + NEGATIVE + NEUTRAL * 3
    return [" ".join(rng.choice(vocab) for _ in range(words)) + "." for _ in range(n)]


async def load(
    url: str, texts: list[str], n: int, concurrency: int, timeout: float
) -> tuple[list[float], list[str]]:
    """Send ``n`` POST /predict, ``concurrency`` at a time; return latencies (s) and error messages."""
    latencies: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            async with sem:
                start = time.perf_counter()
                try:
                    r = await client.post("/predict", json={"text": texts[i % len(texts)]})
                    if r.status_code != 200 or "label" not in r.json():
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a release folder (default: a quick nbsvm on synthetic reviews)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--words", type=int, default=230, help="words per review sent (IMDB's median: ~174)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=64, help="the server's micro-batch limit (1: none)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole load")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    texts = reviews(200, args.words)
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else quick_release(Path(tmp))
        port = free_port()
        server = start_server(release, port, args.workers, args.max_batch)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, texts, 32, args.concurrency, 30))  # warm-up, not counted
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            latencies, errors = asyncio.run(
                asyncio.wait_for(load(url, texts, args.requests, args.concurrency, 30), args.time_limit)
            )
            wall = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, server workers {args.workers}, "
        f"max batch {args.max_batch}, load average {load_before:.2f} before"
    )
    print(f"release: {release if args.release else 'quick nbsvm on synthetic reviews, temporary'}")
    size = sum(len(t.encode()) for t in texts) / len(texts)
    print(
        f"{len(latencies)} POST /predict (JSON reviews of {args.words} words, ~{size:,.0f} bytes), "
        f"concurrency {args.concurrency}: errors {len(errors)}"
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
