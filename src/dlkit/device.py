"""Pick a device, the dtypes that run fast on it, and seed every random number generator.

    device = get_device("auto")                 # cuda > mps > cpu; "cpu", "cuda", "cuda:1", "mps", "gpu"
    amp_dtype = resolve_amp_dtype(None, device)  # bf16 where it pays, else None (float32)
    with autocast(device, amp_dtype):           # a no-op when amp_dtype is None
        loss = loss_fn(model(x), y)

Which dtypes pay is a fact of the hardware: bf16 matmuls run at twice the float32 speed on CPUs with
native bf16 (AVX512-BF16 or AMX) and 10-30x slower than float32 on CPUs without it (AVX2 only, most
laptops), where PyTorch emulates them. ``DLKIT_CPU_BF16=0`` makes dlkit treat the CPU as one without
native bf16 (to see, and test, what such a machine does); ``DLKIT_CPU_BF16=1`` as one with it.
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from dlkit.errors import UserError

__all__ = [
    "CPU_BF16_ENV",
    "DeviceNotAvailableError",
    "autocast",
    "autocast_dtype",
    "cpu_has_native_bf16",
    "cpu_name",
    "describe_device",
    "fast_dtype",
    "get_device",
    "resolve_amp_dtype",
    "seed_everything",
]

CPU_BF16_ENV = "DLKIT_CPU_BF16"


class DeviceNotAvailableError(UserError, RuntimeError):
    """A device was asked for by name, and this machine does not have it."""


def get_device(name: str | None = None) -> torch.device:
    """Return ``torch.device(name)``, or the best available one: cuda > mps > cpu.

    ``name`` may be "auto" (the same as None), "cpu", "cuda", "cuda:1", "mps" or "gpu" (whichever GPU
    there is). Asking for a device that is not there is a :class:`DeviceNotAvailableError` that says what
    is available, rather than a silent fallback.
    """
    if name == "gpu":
        if torch.cuda.is_available() or torch.backends.mps.is_available():
            return get_device(None)
        raise DeviceNotAvailableError(
            f"--device gpu was asked for, but this machine has no GPU: {_available()}"
        )
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            # Under torchrun each process owns the GPU given by LOCAL_RANK.
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise DeviceNotAvailableError(
            f"--device {name!r} is not a device name: use auto, cpu, cuda, cuda:1, mps or gpu "
            f"({_available()})"
        ) from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceNotAvailableError(
            f"--device {name} was asked for, but no CUDA GPU is available: {_available()}"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceNotAvailableError(f"--device {name} was asked for, but {_available()}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceNotAvailableError(
            f"--device {name} was asked for, but MPS is not available: {_available()}"
        )
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceNotAvailableError(
            f"--device {name}: the course runs on cpu, cuda or mps ({_available()})"
        )
    return device


def _available() -> str:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return "available devices are " + ", ".join(found)


def cpu_name() -> str:
    """The processor's model name (e.g. 'AMD EPYC 9V74 80-Core Processor'), for benchmark headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """A one-line human description, e.g. 'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
        return f"cpu ({torch.get_num_threads()} threads, {bf16})"
    return str(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced-precision dtype to autocast to on ``device``, or None where autocast does not pay.

    bf16 on CUDA GPUs that support it (Ampere and newer) and fp16 on older ones (which then need a
    GradScaler); bf16 on CPU only on processors with native bf16 (:func:`cpu_has_native_bf16`), where it
    is faster; MPS keeps fp32 here, since its autocast support is still partial.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def fast_dtype(device: torch.device) -> torch.dtype:
    """The dtype for maths that tolerates bf16's 8 bits of mantissa (e.g. Muon's Newton-Schulz): bf16
    where the hardware runs it natively, float32 elsewhere (emulated bf16 is 10-30x slower)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_amp_dtype(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a run's ``amp`` flag: None = where it pays (:func:`autocast_dtype`),
    True = at least bf16 (e.g. to see bf16 on a CPU without native support), False = off."""
    if amp is False:
        return None
    dtype = autocast_dtype(device)
    if amp is True and dtype is None:
        return torch.bfloat16
    return dtype


@contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast(device.type, dtype)``, or nothing when ``dtype`` is None (float32)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def cpu_has_native_bf16() -> bool:
    """True on CPUs that run bf16 natively (AVX512-BF16 or AMX); ``DLKIT_CPU_BF16=0|1`` overrides."""
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return _detected_native_bf16()


@lru_cache(maxsize=1)
def _detected_native_bf16() -> bool:
    capability = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX2", "AVX512", "AMX"...
    if "AMX" in capability:
        return True
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512_bf16" in f.read()
    except OSError:
        return False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
