"""Measure what a technique is worth on this machine: step times, activation memory, bf16 without
native support, tables, and a server under load. The production lessons and benchmarks share these.

    seconds = time_per_call(step, device=device, warmup=2, repeats=5)     # median of 5, after 2
    saved = saved_activation_bytes(model, lambda: loss_fn(model(x), y))   # what backward keeps
    rate, first = feed_rate(DataLoader(PNGImages(x, y), 64), device, len(x))  # images per second
    rates = op_rates(emulate_bf16=True)          # fp32 vs bf16 GFLOP/s as a CPU without bf16 runs them
    print(markdown_table(rows, ["setting", "img/s", "vs naive"]))
    with server_process(cmd, port) as url:                                 # a server in a subprocess
        result = load_test(url + "predict", bodies, concurrency=16)        # latencies, errors, req/s
    with TestClient(app) as client:                                        # the same, in this process
        result = load_test_in_process(lambda b: client.post("/predict", json=b), bodies, concurrency=16)

Every time here is wall-clock time with the device synchronised: a GPU runs asynchronously, and a
timer that does not wait for it measures how fast Python queues work, not how fast the GPU does it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dlkit.device import describe_device

__all__ = [
    "EMULATED_BF16_ENV",
    "LoadResult",
    "PNGImages",
    "feed_rate",
    "free_port",
    "load_average",
    "load_test",
    "load_test_in_process",
    "machine_line",
    "markdown_table",
    "op_rates",
    "percentile",
    "saved_activation_bytes",
    "server_process",
    "switches",
    "sync",
    "time_per_call",
    "write_tables",
]

# A CPU without bf16 instructions, simulated on one that has them: oneDNN (matmuls, convolutions) may
# use AVX-512 but not its bf16 or AMX extensions, and ATen's own kernels are the AVX2 ones. dlkit is
# told too (DLKIT_CPU_BF16=0). Both variables are read once, when torch starts: a fresh process only.
EMULATED_BF16_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "DLKIT_CPU_BF16": "0",
}


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextmanager
def switches(*, tf32: bool = False, threads: int = 0) -> Iterator[None]:
    """TF32 for float32 matmuls and convolutions on CUDA on or off, and ``threads`` CPU threads (0: as
    they are), for the block; the previous values are put back afterwards."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_num_threads()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.set_num_threads(threads or old[2])
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old[:2]
        torch.set_num_threads(old[2])


def time_per_call(
    fn: Callable[[], Any], *, device: torch.device, warmup: int = 2, repeats: int = 5, calls: int = 1
) -> float:
    """The median wall-clock seconds of one ``fn()``, over ``repeats`` timings of ``calls`` calls each,
    after ``warmup`` untimed calls (first calls allocate memory, pick kernels, compile)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def saved_activation_bytes(model: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``forward()`` (which returns a loss).

    These are the activations: the memory that grows with the batch. ``model``'s parameters and
    buffers are left out (they are there anyway), and a storage saved twice (a view, or one input of
    two operations) counts once.
    """
    kept = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in kept:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    del loss  # the graph, and with it the saved tensors, go here
    return sum(saved.values())


class PNGImages(Dataset):
    """(uint8 image (C, H, W), label) pairs decoded from PNG bytes, one file per image, as a folder of
    image files is read. PNG is lossless: the pixels decoded are the pixels encoded."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.files, self.labels = [_png(image) for image in images], labels  # images: uint8 (N, C, H, W)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = np.array(Image.open(io.BytesIO(self.files[i])).convert("RGB"))  # (H, W, C)
        return torch.from_numpy(pixels).permute(2, 0, 1), self.labels[i]


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def feed_rate(batches: Iterable[Any], device: torch.device, n: int) -> tuple[float, torch.Tensor]:
    """Images per second from (uint8 x, y) ``batches`` of ``n`` images in all, moved to ``device`` as
    floats in [0, 1] (the first iteration, workers' start-up included), and the first batch."""
    start, first = time.perf_counter(), None
    for x, _ in batches:
        x = x.to(device, non_blocking=True).float() / 255  # (B, C, H, W)
        first = x if first is None else first
    sync(device)
    if first is None:
        raise ValueError("no batches")
    return n / (time.perf_counter() - start), first


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, linearly interpolated (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages ("1.02 0.98 0.75"): how busy the machine was."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def machine_line(device: torch.device) -> str:
    """What a table was measured on: the device, the CPU, torch and the load, in one line."""
    from dlkit.device import cpu_name

    parts = [describe_device(device), cpu_name(), f"{os.cpu_count()} cores", f"torch {torch.__version__}"]
    return ", ".join(parts) + f"; load {load_average()}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a Markdown table with ``columns`` (a missing value is blank, floats to 3 digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_tables(folder: str | os.PathLike[str], title: str, machine: str, tables: Mapping[str, Any]) -> None:
    """``tables`` ({name: rows}) as ``folder/table.md`` (Markdown, under ``title`` and ``machine``) and
    ``folder/table.json``."""
    from pathlib import Path

    text = [f"# {title}\n\n{machine}\n"]
    text += [
        f"## {name}\n\n{markdown_table(rows, list(rows[-1]))}\n" for name, rows in tables.items() if rows
    ]
    Path(folder, "table.md").write_text("\n".join(text))
    Path(folder, "table.json").write_text(json.dumps({"machine": machine, "tables": tables}, indent=1) + "\n")


# --- bf16 with and without native support -------------------------------------------------------------


def _op_rate(op: str, dtype: torch.dtype | None, size: int, seconds: float) -> float:
    """GFLOP/s of one training op (forward and backward) on the CPU, under autocast to ``dtype``."""
    layer: torch.nn.Module
    if op == "matmul":  # a Linear layer: (size, size) activations times a (size, size) weight
        x, layer = torch.randn(size, size), torch.nn.Linear(size, size, bias=False)
        flops = 3 * 2 * size**3  # forward, and two matmuls backward
    else:  # a 3x3 convolution, 64 channels, on (size // 16) 16x16 feature maps
        x, layer = torch.randn(max(size // 16, 1), 64, 16, 16), torch.nn.Conv2d(64, 64, 3, padding=1)
        flops = 3 * 2 * x.shape[0] * 64 * 64 * 9 * 16 * 16

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            layer(x).float().sum().backward()

    calls = max(1, int(seconds / max(time_per_call(step, device=torch.device("cpu"), repeats=1), 1e-6)))
    return flops / time_per_call(step, device=torch.device("cpu"), warmup=0, repeats=3, calls=calls) / 1e9


def op_rates(
    *, emulate_bf16: bool = False, threads: int | None = None, size: int = 512, seconds: float = 0.2
) -> dict[str, dict[str, float]]:
    """{"matmul": {"float32": GFLOP/s, "bfloat16": GFLOP/s}, "conv3x3": {...}} for training on the CPU.

    ``emulate_bf16=True`` measures in a fresh process as a CPU without bf16 instructions runs it (see
    :data:`EMULATED_BF16_ENV`): there PyTorch converts to float32 and back around every operation.
    """
    threads = threads or torch.get_num_threads()
    if emulate_bf16:
        cmd = [sys.executable, "-m", "dlkit.perf", str(threads), str(size), str(seconds)]
        env = {**os.environ, **EMULATED_BF16_ENV}
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dtypes = {"float32": None, "bfloat16": torch.bfloat16}
        return {
            op: {k: _op_rate(op, d, size, seconds) for k, d in dtypes.items()} for op in ("matmul", "conv3x3")
        }
    finally:
        torch.set_num_threads(old)


# --- A server in a subprocess, and a load test against it -----------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(
    cmd: Sequence[str], port: int, *, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run ``cmd`` (a server listening on 127.0.0.1:``port``) until the block ends; yields its base URL
    ("http://127.0.0.1:PORT/") once ``GET /health`` answers 200. The server is stopped on leaving."""
    import httpx

    proc = subprocess.Popen(list(cmd), env=None if env is None else {**os.environ, **env})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(url + "health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer /health within {timeout:g} s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LoadResult:
    """What a load test measured: one latency (seconds) per answered request, the errors, the wall time."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        """p50 and p95 latency in milliseconds, requests per second, and the number of errors."""
        return {
            "p50_ms": 1000 * percentile(self.latencies, 50),
            "p95_ms": 1000 * percentile(self.latencies, 95),
            "req_per_s": self.requests_per_second,
            "errors": float(len(self.errors)),
        }


def load_test(
    url: str,
    bodies: Sequence[Any],
    *,
    concurrency: int = 16,
    timeout: float = 30.0,
    time_limit: float = 120.0,
) -> LoadResult:
    """POST each of ``bodies`` (JSON) to ``url``, ``concurrency`` requests in flight at a time.

    Each request has a ``timeout``; the whole test stops after ``time_limit`` seconds (requests not
    sent by then are left out). A status other than 200 or a failed request is an error.
    """
    import httpx

    result = LoadResult()

    async def worker(client: httpx.AsyncClient, queue: asyncio.Queue[Any], deadline: float) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            body = queue.get_nowait()
            start = time.perf_counter()
            try:
                response = await client.post(url, json=body)
                if response.status_code == 200:
                    result.latencies.append(time.perf_counter() - start)
                else:
                    result.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as e:
                result.errors.append(f"{type(e).__name__}: {e}")

    async def main() -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            start = time.perf_counter()
            deadline = time.monotonic() + time_limit
            await asyncio.gather(*(worker(client, queue, deadline) for _ in range(concurrency)))
            result.seconds = time.perf_counter() - start

    asyncio.run(main())
    return result


def load_test_in_process(
    post: Callable[[Any], Any], bodies: Sequence[Any], *, concurrency: int = 16, time_limit: float = 60.0
) -> LoadResult:
    """``post(body)`` for each of ``bodies`` from ``concurrency`` threads, e.g. a FastAPI TestClient's
    ``client.post`` (the app then runs in this process, with no network: loopback without sockets).

    A response whose ``status_code`` is not 200, or an exception, is an error; requests not started
    within ``time_limit`` seconds are left out, so the test is bounded in count and in time.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    result, lock, todo = LoadResult(), threading.Lock(), iter(bodies)
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            start = time.perf_counter()
            try:
                response = post(body)
                ok, text = response.status_code == 200, f"HTTP {response.status_code}: {response.text[:200]}"
            except Exception as e:  # a failed request is a result of the test, not its end
                ok, text = False, f"{type(e).__name__}: {e}"
            with lock:
                (result.latencies.append(time.perf_counter() - start) if ok else result.errors.append(text))

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - start
    return result


if __name__ == "__main__":  # op_rates(emulate_bf16=True) runs this in a fresh process: THREADS SIZE SECONDS
    n_threads, n_size, n_seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(op_rates(threads=n_threads, size=n_size, seconds=n_seconds)))
