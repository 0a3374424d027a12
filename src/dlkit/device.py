"""Pick a device, the autocast dtype that goes with it, and seed every random number generator."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["autocast_dtype", "cpu_name", "describe_device", "get_device", "seed_everything"]


def get_device(name: str | None = None) -> torch.device:
    """Return ``torch.device(name)``, or the best available one: cuda > mps > cpu.

    ``name`` may be "auto" (the same as None), "cpu", "cuda", "cuda:1" or "mps". Asking for a device
    that is not there is an error that says what is available, rather than a silent fallback.
    """
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            # Under torchrun each process owns the GPU given by LOCAL_RANK.
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} was asked for, but no CUDA GPU is available: {_available()}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"--device {name} was asked for, but MPS is not available: {_available()}")
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
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced-precision dtype to autocast to on ``device``, or None where autocast does not pay.

    bf16 on CUDA GPUs that support it (Ampere and newer) and fp16 on older ones (which then need a
    GradScaler); bf16 on CPU only on processors with native bf16 (AVX512-BF16 or AMX), where it is
    faster; MPS keeps fp32 here, since its autocast support is still partial.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16() -> bool:
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
