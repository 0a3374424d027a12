"""How much memory does the image classifier's server take for large uploads, and does it give it back?

Starts ``python -m projects.image_classifier serve`` on a free port of 127.0.0.1 (an untrained
resnet_small of the default widths, released into a temporary folder; one worker), then sends
``--concurrency`` (16) uploads of one ``--megapixels`` (36) PNG at once, ``--rounds`` times, and reads
the server's resident memory (RSS, the process and its children): before the uploads (after a few
small warm-up requests), at its peak (sampled every 10 ms, and the kernel's high-water mark), and
``--settle`` seconds after the last answer. Every request has a timeout and the run a time limit;
nothing leaves the machine. The PNG (a gradient, a checkerboard and a band of noise) compresses to a
few MB, under the server's 10 MB body limit, and decodes to 108 MB of RGB.

    python benchmarks/image_serve_memory.py                        # 16 x 36 MP, the server's defaults
    python benchmarks/image_serve_memory.py --server-flags "--decode-megapixels 1000"   # no bound
    python benchmarks/image_serve_memory.py --root /path/to/old/checkout   # another version's server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serve_load, the other benchmark's helpers
from serve_load import ROOT, free_port, start_server, untrained_release  # noqa: E402

from dlkit.device import cpu_name  # noqa: E402

MiB = 2**20


def big_png(megapixels: float, noise_rows: int = 150) -> bytes:
    """A square RGB PNG of about ``megapixels``: gradients, a checkerboard, and a band of noise."""
    n = int((megapixels * 1e6) ** 0.5)
    ramp = np.linspace(0, 255, n).astype(np.uint8)  # (n,)
    checks = (np.arange(n) // 40) % 2
    pixels = np.empty((n, n, 3), np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = ((checks[:, None] + checks[None, :]) % 2 * 200).astype(np.uint8)
    pixels[:noise_rows] = np.random.default_rng(0).integers(0, 256, (noise_rows, n, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and its children (uvicorn's workers, if any)."""
    process = psutil.Process(pid)
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def high_water(pid: int) -> int:
    """The kernel's peak resident bytes of ``pid`` (VmHWM) since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """The largest RSS seen, sampled every ``every`` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(self.every)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


async def upload_all(url: str, body: bytes, n: int, timeout: float) -> list[str]:
    """``n`` concurrent POST /predict of ``body``; the answers (status and a short reason)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one() -> str:
            try:
                r = await client.post("/predict", files={"file": ("big.png", body, "image/png")})
            except httpx.HTTPError as e:
                return f"error {e!r}"
            return "200" if r.status_code == 200 else f"{r.status_code} {r.text[:120]}"

        return await asyncio.gather(*(one() for _ in range(n)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=36.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--rounds", type=int, default=2, help="bursts of --concurrency uploads, one after another"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait before the 'after' reading"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    parser.add_argument("--server-flags", default="", help='extra serve flags, e.g. "--decode-megapixels 80"')
    parser.add_argument(
        "--root", default=str(ROOT), help="the checkout whose projects/ serve (default: this)"
    )
    args = parser.parse_args()

    body = big_png(args.megapixels)
    with Image.open(io.BytesIO(body)) as image:
        size = image.size
    with tempfile.TemporaryDirectory() as tmp:
        release = untrained_release(Path(tmp) / "release")
        port = free_port()
        server = start_server(release, port, 1, 32, extra=shlex.split(args.server_flags), cwd=Path(args.root))
        try:
            url = f"http://127.0.0.1:{port}"
            small = io.BytesIO()
            Image.new("RGB", (32, 32), "red").save(small, "PNG")
            asyncio.run(upload_all(url, small.getvalue(), 8, 30))  # warm-up: the model and the code paths
            time.sleep(1.0)
            before, load_before = rss(server.pid), os.getloadavg()[0]
            sampler = Sampler(server.pid)
            sampler.start()
            start = time.perf_counter()
            answers = []
            for _ in range(args.rounds):
                answers += asyncio.run(upload_all(url, body, args.concurrency, args.timeout))
            wall = time.perf_counter() - start
            time.sleep(args.settle)
            after = rss(server.pid)
            peak = max(sampler.stop(), after)
            hwm = high_water(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    errors = [a for a in answers if a != "200"]
    print(
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, one server worker, "
        f"load average {load_before:.2f} before; server code from {args.root}"
    )
    print(f"server flags: {args.server_flags or '(defaults)'}")
    print(
        f"{args.rounds} x {args.concurrency} concurrent POST /predict of a {size[0]}x{size[1]} PNG "
        f"({size[0] * size[1] / 1e6:.1f} MP, {len(body) / MiB:.1f} MiB): "
        f"{len(answers) - len(errors)} answered 200, {len(errors)} not, in {wall:.1f} s"
    )
    print(
        f"server RSS: before {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (kernel high-water mark "
        f"{hwm / MiB:.0f} MiB), {args.settle:g} s after {after / MiB:.0f} MiB"
    )
    for error in errors[:5]:
        print("  not 200:", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
