"""What every lesson script shares: its config and flags, its run folder, its recorded outcomes.

A lesson starts with

    @dataclass
    class Config(LessonConfig):
        num_epochs: int = 20

    lesson = Lesson("fundamentals/04_training_loop", Config, quick={"num_epochs": 2})
    cfg, device = lesson.cfg, lesson.device

records what it measured with ``lesson.record("test_acc", acc, min=0.88)``, saves figures with
``lesson.savefig(fig, "loss_curves")`` and ends with ``lesson.finish()``. The outcomes are written
as JSON to ``runs/<lesson>/outcomes.json`` and, when the environment variable ``DLKIT_OUTCOMES``
names a file, there as well: that is how the course runner and the tests read them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from dlkit.config import config_to_dict, parse_config, save_config
from dlkit.device import describe_device, get_device, seed_everything

__all__ = ["Lesson", "LessonConfig", "in_notebook", "runs_root"]

OUTCOMES_ENV = "DLKIT_OUTCOMES"


@dataclass
class LessonConfig:
    """Flags every lesson has; a lesson's own Config subclasses this."""

    quick: bool = field(default=False, metadata={"help": "tiny data and few steps: seconds on a CPU"})
    device: str = field(default="auto", metadata={"help": "auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps"})
    seed: int = field(default=0, metadata={"help": "seed for every random number generator"})


C = TypeVar("C", bound=LessonConfig)


def in_notebook() -> bool:
    """True inside a Jupyter kernel, where figures display inline and argv belongs to the kernel."""
    return "ipykernel" in sys.modules


def runs_root() -> Path:
    """Where runs are written: ``$DLKIT_RUNS`` or ``./runs``."""
    return Path(os.environ.get("DLKIT_RUNS", "runs"))


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class Lesson(Generic[C]):
    """The run of one lesson: parsed config, chosen device, run folder and recorded outcomes."""

    def __init__(
        self,
        name: str,
        config_cls: type[C] = LessonConfig,  # type: ignore[assignment]
        *,
        quick: dict[str, Any] | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.name = name
        if argv is None and in_notebook():
            argv = []  # the kernel's own arguments are not ours
        if os.environ.get("DLKIT_QUICK") == "1":  # how a notebook asks for quick mode
            argv = [*(sys.argv[1:] if argv is None else argv), "--quick"]
        self.cfg: C = parse_config(config_cls, argv, quick=quick)
        self.device = get_device(self.cfg.device)
        seed_everything(self.cfg.seed)
        self.run_dir = runs_root() / name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.json")
        self._start = time.perf_counter()
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.figures: list[str] = []
        self.data: dict[str, str] = {}
        mode = "quick" if self.cfg.quick else "full"
        print(f"# {name}  [{mode} mode, device {describe_device(self.device)}, torch {torch.__version__}]")
        self._save()

    @property
    def quick(self) -> bool:
        return self.cfg.quick

    def record(
        self,
        name: str,
        value: float | int | torch.Tensor,
        *,
        min: float | None = None,
        max: float | None = None,
    ) -> float:
        """Record a named outcome and the range it is expected in; returns it as a float.

        The range states what the lesson teaches ("the gradients match to 1e-8", "accuracy >= 95%"),
        so it is checked here, printed, and written for the course runner and the tests.
        """
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        passed = math.isfinite(value) and (min is None or value >= min) and (max is None or value <= max)
        self.outcomes[name] = {"value": value, "min": min, "max": max, "passed": passed}
        status = "ok" if passed else "OUT OF EXPECTED RANGE"
        print(f"  outcome {name} = {value:.6g}  (expected {_range_text(min, max)})  {status}")
        self._save()
        return value

    def uses_data(self, name: str, description: str) -> None:
        """Say which data the lesson used, e.g. ``uses_data("train", "Fashion-MNIST from ...")``."""
        self.data[name] = description
        print(f"  data {name}: {description}")
        self._save()

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``runs/<lesson>/<name>.png``; show it inline in a notebook."""
        path = self.run_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        if str(path) not in self.figures:
            self.figures.append(str(path))
        if not in_notebook():
            import matplotlib.pyplot as plt

            plt.close(fig)
        print(f"  figure {path}")
        self._save()
        return path

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o["passed"] for o in self.outcomes.values())

    def finish(self) -> None:
        """Print what was measured; a script exits non-zero if an outcome is out of its range."""
        seconds = time.perf_counter() - self._start
        self._save(seconds=seconds)
        print(f"\n# what you measured in {self.name} ({seconds:.1f} s)")
        for key, o in self.outcomes.items():
            mark = "PASS" if o["passed"] else "FAIL"
            print(f"  {mark}  {key:<28} {o['value']:<12.6g} expected {_range_text(o['min'], o['max'])}")
        if not self.passed and not in_notebook():
            sys.exit(1)

    def _save(self, seconds: float | None = None) -> None:
        data = {
            "lesson": self.name,
            "quick": self.cfg.quick,
            "device": describe_device(self.device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "config": config_to_dict(self.cfg),
            "outcomes": self.outcomes,
            "figures": self.figures,
            "data": self.data,
            "seconds": seconds if seconds is not None else time.perf_counter() - self._start,
            "finished": seconds is not None,
        }
        _write_json_atomic(self.run_dir / "outcomes.json", data)
        extra = os.environ.get(OUTCOMES_ENV)
        if extra:
            _write_json_atomic(Path(extra), data)


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any finite value"
