"""How fast does the image classifier's server answer? POST /predict under concurrent load.

Starts ``python -m projects.image_classifier serve`` on a free port of 127.0.0.1 (a given release, or
an untrained resnet_small of the default widths released into a temporary folder), sends a few
warm-up requests, then ``--requests`` POST /predict at ``--concurrency`` from an httpx async client.
Every request has a timeout and the whole run a time limit. It prints the hardware, the errors (must be
0: the exit status is 1 otherwise), latency percentiles and requests per second. Client and server
share the machine's cores.

    python benchmarks/serve_load.py [--release DIR] [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import torch
from PIL import Image

from dlkit.device import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def untrained_release(folder: Path) -> Path:
    """An untrained resnet_small (default widths) for CIFAR-10's classes: a real model's serving cost."""
    sys.path.insert(0, str(ROOT))
    from dlkit.data import CIFAR10_CLASSES
    from dlkit.export import save_release
    from projects.image_classifier.models import build_model

    model = build_model("resnet_small", 10, 3)
    metadata = {
        "architecture": {"name": "resnet_small", "kwargs": {}},
        "num_classes": 10,
        "in_channels": 3,
        "classes": list(CIFAR10_CLASSES),
        "preprocessing": {"size": [32, 32], "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
        "dataset": "none: untrained, for a load test",
        "dataset_name": "none",
        "metrics": {},
    }
    return save_release(model, metadata, folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(  # noqa: ANN201
    release: Path,
    port: int,
    workers: int,
    max_batch: int,
    project: str = "image_classifier",
    *,
    extra: Sequence[str] = (),
    cwd: Path = ROOT,
):
    """``python -m projects.PROJECT serve`` (run from ``cwd``, with ``extra`` flags) on 127.0.0.1:``port``,
    once its /health answers."""
    cmd = [sys.executable, "-m", f"projects.{project}", "serve", "--release", str(release),
           "--port", str(port), "--workers", str(workers), "--max-batch", str(max_batch),
           "--device", "cpu", "--log-level", "warning", *extra]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=cwd)
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


Send = Callable[[httpx.AsyncClient, int], Awaitable[str | None]]  # request i -> an error message or None


async def load(
    url: str, send: Send, n: int, concurrency: int, timeout: float
) -> tuple[list[float], list[str]]:
    """Make ``n`` requests with ``send``, ``concurrency`` at a time; return latencies (s) and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            async with sem:
                start = time.perf_counter()
                try:
                    error = await send(client, i)
                except httpx.HTTPError as e:
                    error = repr(e)
                if error:
                    errors.append(error)
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, errors


def run_load(project: str, release: Path, send: Send, args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, warm it up (32 requests, not counted), then time ``args.requests`` requests."""
    port = free_port()
    server = start_server(release, port, args.workers, args.max_batch, project)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(url, send, 32, args.concurrency, 30))
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        latencies, errors = asyncio.run(
            asyncio.wait_for(load(url, send, args.requests, args.concurrency, 30), args.time_limit)
        )
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"latencies": latencies, "errors": errors, "wall": wall, "load_before": load_before}


def report(result: dict[str, Any], args: argparse.Namespace, release: str, what: str) -> int:
    """Print the hardware, the release, errors and latency percentiles; exit status 1 on any error."""
    latencies, errors, wall = result["latencies"], result["errors"], result["wall"]
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, server workers {args.workers}, "
        f"max batch {args.max_batch}, load average {result['load_before']:.2f} before"
    )
    print(f"release: {release}")
    print(f"{len(latencies)} POST /predict ({what}), concurrency {args.concurrency}: errors {len(errors)}")
    p50, p90, p99 = (percentile(latencies, q) * 1000 for q in (50, 90, 99))
    print(
        f"latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"{len(latencies) / wall:.1f} requests/s over {wall:.1f} s"
    )
    for message in errors[:5]:
        print("  error:", message)
    return 1 if errors else 0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (q in 0..100)."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q / 100 * len(ranked)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="a release folder (default: an untrained resnet_small)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32, help="side of the PNG sent (default 32)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="the server's micro-batch limit (1: none)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole load")
    args = parser.parse_args()

    image = io.BytesIO()
    Image.effect_noise((args.image_size, args.image_size), 60).convert("RGB").save(image, "PNG")
    body = image.getvalue()

    async def send(client: httpx.AsyncClient, i: int) -> str | None:
        r = await client.post("/predict", files={"file": ("x.png", body, "image/png")})
        return (
            None
            if r.status_code == 200 and r.json().get("predictions")
            else f"HTTP {r.status_code}: {r.text[:200]}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else untrained_release(Path(tmp) / "release")
        result = run_load("image_classifier", release, send, args)
    name = str(release) if args.release else "untrained resnet_small (default widths), temporary"
    return report(result, args, name, f"{args.image_size}x{args.image_size} PNG, {len(body):,} bytes")


if __name__ == "__main__":
    sys.exit(main())
