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
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def start_server(release: Path, port: int, workers: int, max_batch: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "projects.image_classifier", "serve", "--release", str(release),
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


async def load(
    url: str, image: bytes, n: int, concurrency: int, timeout: float
) -> tuple[list[float], list[str]]:
    """Send ``n`` POST /predict, ``concurrency`` at a time; return latencies (s) and error messages."""
    latencies: list[float] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one() -> None:
            async with sem:
                start = time.perf_counter()
                try:
                    r = await client.post("/predict", files={"file": ("x.png", image, "image/png")})
                    if r.status_code != 200 or not r.json().get("predictions"):
                        errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(one() for _ in range(n)))
    return latencies, errors


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
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(args.release) if args.release else untrained_release(Path(tmp) / "release")
        port = free_port()
        server = start_server(release, port, args.workers, args.max_batch)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, image.getvalue(), 32, args.concurrency, 30))  # warm-up, not counted
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            latencies, errors = asyncio.run(
                asyncio.wait_for(
                    load(url, image.getvalue(), args.requests, args.concurrency, 30), args.time_limit
                )
            )
            wall = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, server workers {args.workers}, "
        f"max batch {args.max_batch}, "
        f"load average {load_before:.2f} before"
    )
    print(f"release: {release if args.release else 'untrained resnet_small (default widths), temporary'}")
    print(
        f"{len(latencies)} POST /predict ({args.image_size}x{args.image_size} PNG, "
        f"{len(image.getvalue()):,} bytes), concurrency {args.concurrency}: errors {len(errors)}"
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
