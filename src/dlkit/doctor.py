"""``dlkit doctor``: what this machine has for the course, and a clear line for each problem with its fix."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

import torch

__all__ = ["diagnose", "main"]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int(parts[1])


def diagnose() -> tuple[list[str], list[str]]:
    """Return (report lines, problem lines). Each problem line says what is wrong and how to fix it."""
    lines: list[str] = []
    problems: list[str] = []

    lines.append(f"python       {platform.python_version()} ({sys.executable})")
    for package, minimum in (
        ("torch", (2, 6)),
        ("torchvision", (0, 21)),
        ("numpy", None),
        ("matplotlib", None),
    ):
        version = _version(package)
        lines.append(f"{package:<12} {version or 'not installed'}")
        if version is None:
            problems.append(
                f"{package} is not installed: run `pip install -e .` in the repository (or make demo)."
            )
        elif minimum and _major_minor(version) < minimum:
            problems.append(
                f"{package} {version} is older than {minimum[0]}.{minimum[1]}: pip install -U {package}"
            )

    lines.append(
        f"cpu          {platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, {torch.backends.cpu.get_cpu_capability()}"
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            bf16 = "bf16" if torch.cuda.is_bf16_supported() else "no bf16"
            lines.append(
                f"cuda:{i}       {torch.cuda.get_device_name(i)} ({bf16}, CUDA {torch.version.cuda})"
            )
    else:
        built = (
            f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        )
        lines.append(f"cuda         not available ({built}); lessons run on the CPU")
    mps = torch.backends.mps.is_available()
    lines.append(f"mps          {'available' if mps else 'not available'}")

    from dlkit.data import REGISTRY, DatasetNotFoundError, data_search_path, fetch, locate

    lines.append("data search path (DLKIT_DATA, then the cache):")
    for root in data_search_path():
        lines.append(f"  {root}{'' if root.exists() else '  (does not exist)'}")
    for entry in os.environ.get("DLKIT_DATA", "").split(os.pathsep):
        if entry and not Path(entry).is_dir():
            problems.append(f"DLKIT_DATA names {entry}, which is not a folder: fix the path or remove it.")
    lines.append("datasets:")
    for name in REGISTRY:
        try:
            where = locate(name)
        except Exception as e:  # a corrupt copy is a problem to report, not a crash
            lines.append(f"  {name:<17} PROBLEM: {e}")
            problems.append(f"{name}: {e}")
            continue
        if where is not None:
            lines.append(f"  {name:<17} found: {where}")
            continue
        try:
            fetch(name, download=False)
            lines.append(f"  {name:<17} found")
        except DatasetNotFoundError as e:
            first = str(e).strip().splitlines()[-1]
            lines.append(f"  {name:<17} not found locally (full-mode lessons download it on first use)")
            problems.append(f"{name} is not available offline. {first}")
    return lines, problems


def main() -> int:
    lines, problems = diagnose()
    print("\n".join(lines))
    if problems:
        print(f"\n{len(problems)} thing(s) to know or fix:")
        for p in problems:
            print(f"  - {p}")
    else:
        print("\nno problems found")
    # Missing datasets are downloaded on demand, so only a broken installation fails the doctor.
    broken = [p for p in problems if "not installed" in p or "older than" in p]
    return 1 if broken else 0
