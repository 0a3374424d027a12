"""Shared test setup: the data search path, and running a lesson in quick mode as its own process."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Development and CI machines have real datasets in ../shared/data; a user's machine does not.
if SHARED_DATA.is_dir():
    entries = [p for p in os.environ.get("DLKIT_DATA", "").split(os.pathsep) if p]
    if str(SHARED_DATA) not in entries:
        os.environ["DLKIT_DATA"] = os.pathsep.join([*entries, str(SHARED_DATA)])
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["DLKIT_PROGRESS"] = "0"
# `pytest -n 2` runs two workers on a 2-core machine: one thread each, or torch's OpenMP threads
# busy-wait for each other and a lesson takes four times as long. Speed is measured in benchmarks/.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_lesson(
    relpath: str, *args: str, tmp_path: Path, timeout: float = 300, no_data: bool = False
) -> dict[str, Any]:
    """Run ``ROOT/relpath`` as a script (``--quick`` unless args say otherwise); return its outcomes JSON.

    The lesson runs with its working directory and ``runs/`` inside ``tmp_path``; a non-zero exit
    fails the test with the lesson's output. ``no_data=True`` runs it as on a user's machine with no
    dataset anywhere: an empty data search path and cache, and no system locations.
    """
    outcomes = tmp_path / "outcomes.json"
    env = {**os.environ, "DLKIT_OUTCOMES": str(outcomes), "DLKIT_RUNS": str(tmp_path / "runs")}
    if no_data:
        env.update(
            DLKIT_DATA=str(tmp_path / "no_data"), DLKIT_CACHE=str(tmp_path / "cache"), DLKIT_SYSTEM_DATA="0"
        )
    argv = list(args) if args else ["--quick"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / relpath), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{relpath} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}"
        )
    data = json.loads(outcomes.read_text())
    data["stdout"] = proc.stdout
    return data


def outcome(data: dict[str, Any], name: str) -> float:
    """The value of one recorded outcome; a missing one fails the test with the names that exist."""
    if name not in data["outcomes"]:
        pytest.fail(f"outcome {name!r} was not recorded; recorded: {sorted(data['outcomes'])}")
    return data["outcomes"][name]["value"]


def require_dataset(name: str) -> None:
    """Skip the calling test, with the reason, when dataset ``name`` is not found locally."""
    from dlkit.data import locate

    if locate(name) is None:
        pytest.skip(
            f"dataset {name!r} not found on the data search path or system locations "
            f"(CI points DLKIT_DATA at ../shared/data; run `dlkit doctor` to see where it looks)"
        )


def load_definitions(path: Path) -> ModuleType:
    """Execute only the imports, defs, classes and UPPER_CASE assignments of a lesson script.

    Importing a lesson would run it (and parse pytest's argv as its flags); this gives the unit tests
    its from-scratch functions without training anything.
    """
    tree = ast.parse(path.read_text(), filename=str(path))

    def keep(node: ast.stmt) -> bool:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef):
            return True
        if isinstance(node, ast.Assign):  # constants such as ACTIVATIONS, and type aliases
            return all(isinstance(t, ast.Name) and t.id.isupper() and len(t.id) > 1 for t in node.targets)
        return False

    tree.body = [node for node in tree.body if keep(node)]
    module = ModuleType(f"lesson_{path.stem}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # @dataclass looks its class's module up here
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module
