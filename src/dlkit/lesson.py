"""What every lesson script shares: its config and flags, its run folder, its recorded outcomes.

A lesson starts with

    @dataclass
    class Config(LessonConfig):
        num_epochs: int = 20

    lesson = Lesson("fundamentals/04_training_loop", Config, quick={"num_epochs": 2})
    cfg, device = lesson.cfg, lesson.device

records what it measured with ``lesson.record("test_acc", acc, min=0.88, chance=0.1)``, saves
figures with ``lesson.savefig(fig, "loss_curves")`` and ends with ``lesson.finish()``. The outcomes are
written as JSON to ``runs/<lesson>/outcomes.json`` and, when the environment variable ``DLKIT_OUTCOMES``
names a file, there as well: that is how the course runner and the tests read them. An expected error
(a :class:`dlkit.errors.UserError`, e.g. a dataset that is not on the machine) prints one line, exits
with status 1 and is written to the same JSON as ``"error"``, so that ``dlkit course`` can say why.

A recorded outcome is a claim that a broken implementation would FAIL. :func:`range_problems` holds
the rules every range must pass (``record`` checks them, and an outcome that breaks one fails):

- it has a bound (``min``, ``max`` or both);
- it is not a time or a speed (``seconds_*``, ``*_per_s``, ``*speedup``...): those depend on the
  machine and its load, so print them, and measure speed goals in ``benchmarks/``;
- an accuracy-like outcome (``*acc*``, ``*map*``, ``*f1*``, ``*recall*``...) says what a model that
  learned nothing scores (``chance=``: 1 / num_classes, the majority share, 0 for mAP), and chance
  lies outside its range (a floor above it, or a ceiling below it for losses);
- a difference that says "X beats Y" (``*_minus_*``, ``*gain*``, ``*reduction*``) has a floor above 0,
  and a ratio (``*ratio*``) that says "X is below Y" a ceiling below 1 (or a floor above 1);
- a floor of 0 or less with no ceiling (a count, a loss, a time: all are >= 0 anyway) needs a
  ``chance`` below it to show that it can fail.

Use :func:`exactly` for an outcome with one right value (a count, a shape) and :func:`approx` for a
float that must equal a value to within rounding: ``lesson.record("receptive_field", rf, **exactly(22))``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import torch

from dlkit.config import config_to_dict, parse_config, save_config
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.errors import UserError, format_error, install_excepthook
from dlkit.progress import in_notebook
from dlkit.runs import atomic_write, runs_root

__all__ = [
    "Lesson", "LessonConfig", "approx", "exactly", "in_notebook", "outcome_problems", "range_problems",
    "runs_root",
]  # fmt: skip

OUTCOMES_ENV = "DLKIT_OUTCOMES"

# Names that say what kind of number an outcome is (matched against its "_"-separated words).
_TIME = re.compile(
    r"(^|_)(seconds?|secs?|time|ms|minutes?|per_s|per_second|speedup|gflops|tflops|throughput|latency)(_|$)"
)
_ACCURACY = re.compile(r"(^|_)(acc|accuracy|map|map50|map_50|auc|auroc|f1|recall|precision|top1|top5)(_|$)")
_NOT_A_SCORE = re.compile(r"(^|_)(diff|error|gap|minus|ratio|reduction|gain)(_|$)")
_DIFFERENCE = re.compile(r"(^|_)(minus|gain|improvement|reduction|advantage|beats)(_|$)")
_RATIO = re.compile(r"(^|_)ratio(_|$)")


def range_problems(
    name: str,
    min: float | None,
    max: float | None,
    chance: float | None = None,  # noqa: A002
) -> list[str]:
    """Why the expected range of outcome ``name`` could not fail, by the rules of the module docstring
    (an empty list: it can). ``chance`` is what a model that learned nothing would score."""
    lo, hi = -math.inf if min is None else min, math.inf if max is None else max
    problems = []
    if min is None and max is None:
        problems.append("no expected range: give min=, max= or both")
    if _TIME.search(name):
        problems.append(
            "a time or speed depends on the machine and its load: print it (benchmarks/ measure speed)"
        )
    if _ACCURACY.search(name) and not _NOT_A_SCORE.search(name) and chance is None:
        problems.append("an accuracy-like outcome needs chance= (what a model that learned nothing scores)")
    if chance is not None and lo <= chance <= hi:
        problems.append(f"chance ({chance:g}) lies inside the range: a model that learned nothing passes")
    if _DIFFERENCE.search(name) and max is None and lo <= 0:
        problems.append("a difference that says one thing beats another needs a floor above 0")
    if _RATIO.search(name) and (min is None and hi >= 1 or max is None and lo <= 1):
        problems.append(
            "a ratio that says one thing is below another needs a ceiling below 1 (or floor above)"
        )
    if min is not None and max is None and min <= 0 and chance is None and not problems:
        problems.append(
            "a floor of 0 or less with no ceiling passes nearly anything: raise it, or give chance="
        )
    return problems


def outcome_problems(data: dict[str, Any]) -> list[str]:
    """Every range problem of an outcomes JSON written by :class:`Lesson` ("lesson: name: why")."""
    found = []
    for key, o in data.get("outcomes", {}).items():
        for problem in range_problems(key, o.get("min"), o.get("max"), o.get("chance")):
            found.append(f"{data.get('lesson', '?')}: {key}: {problem}")
    return found


def exactly(value: float) -> dict[str, float]:
    """The range of an outcome with one right value, such as a count or a shape: ``min = max = value``."""
    return {"min": value, "max": value}


def approx(value: float, tol: float = 1e-9) -> dict[str, float]:
    """The range of a float that must equal ``value`` up to rounding: ``value - tol`` to ``value + tol``."""
    return {"min": value - tol, "max": value + tol}


@dataclass
class LessonConfig:
    """Flags every lesson has; a lesson's own Config subclasses this."""

    quick: bool = field(default=False, metadata={"help": "tiny data and few steps: seconds on a CPU"})
    device: str = field(default="auto", metadata={"help": "auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps"})
    seed: int = field(default=0, metadata={"help": "seed for every random number generator"})


C = TypeVar("C", bound=LessonConfig)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    # NaN is allowed here (unlike dlkit.runs.write_json): a broken lesson's outcome is reported, not lost
    atomic_write(path, json.dumps(data, indent=2) + "\n")


class Lesson(Generic[C]):
    """The run of one lesson: parsed config, chosen device, run folder and recorded outcomes.

    ``description`` is the text of ``--help``; by default the title of the lesson script (its first
    markdown heading).
    """

    def __init__(
        self,
        name: str,
        config_cls: type[C] = LessonConfig,  # type: ignore[assignment]
        *,
        quick: dict[str, Any] | None = None,
        argv: list[str] | None = None,
        description: str | None = None,
    ) -> None:
        self.name = name
        self.run_dir = runs_root() / name
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.figures: list[str] = []
        self.data: dict[str, str] = {}
        self.error: str | None = None
        self._start = time.perf_counter()
        self._install_excepthook()  # from here on an expected error is one line, and recorded
        if argv is None and in_notebook():
            argv = []  # the kernel's own arguments are not ours
        if os.environ.get("DLKIT_QUICK") == "1":  # how a notebook asks for quick mode
            argv = [*(sys.argv[1:] if argv is None else argv), "--quick"]
        description = description or _script_title() or f"Lesson {name}"
        description += " (--quick: tiny data and few steps, seconds on a CPU, offline)"
        self.cfg: C = parse_config(config_cls, argv, quick=quick, description=description)
        self.device = get_device(self.cfg.device)
        seed_everything(self.cfg.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.json")
        mode = "quick" if self.cfg.quick else "full"
        print(f"# {name}  [{mode} mode, device {describe_device(self.device)}, torch {torch.__version__}]")
        self._save()

    @property
    def quick(self) -> bool:
        return self.cfg.quick

    def check_exercises(self, namespace: dict[str, Any]) -> None:
        """Check this lesson's exercises as defined in ``namespace`` (pass ``globals()``); print their state.

        Run as a script, the stubs are still in place and the table says "not started"; in a notebook,
        run the cell again after filling them in. A wrong answer is reported, never raised.
        """
        from dlkit.exercises import report

        report(namespace, self.name)

    def record(
        self,
        name: str,
        value: float | int | torch.Tensor,
        *,
        min: float | None = None,  # noqa: A002
        max: float | None = None,  # noqa: A002
        chance: float | None = None,
    ) -> float:
        """Record a named outcome and the range it is expected in; returns it as a float.

        The range states what the lesson teaches ("the gradients match to 1e-8", "accuracy >= 95%"),
        so it is checked here, printed, and written for the course runner and the tests. ``chance``
        is what a model that learned nothing would score (1 / num_classes for a balanced
        classification): accuracy-like outcomes must give it. A range that could not fail (see
        :func:`range_problems`) fails the outcome, with the reason.
        """
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        problems = range_problems(name, min, max, chance)
        in_range = math.isfinite(value) and (min is None or value >= min) and (max is None or value <= max)
        passed = in_range and not problems
        self.outcomes[name] = {"value": value, "min": min, "max": max, "chance": chance, "passed": passed}
        if problems:
            self.outcomes[name]["problems"] = problems
        status = (
            "ok"
            if passed
            else ("RANGE CANNOT FAIL: " + "; ".join(problems) if problems else "OUT OF EXPECTED RANGE")
        )
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
            for problem in o.get("problems", []):
                print(f"        range cannot fail: {problem}")
        if not self.passed and not in_notebook():
            sys.exit(1)

    def _install_excepthook(self) -> None:
        """dlkit's hook (a UserError prints one line, no traceback), plus: write the error to the JSON."""
        install_excepthook()
        hook = sys.excepthook

        def record_and_report(
            kind: type[BaseException], exc: BaseException, tb: TracebackType | None
        ) -> None:
            self.error = format_error(exc) if isinstance(exc, UserError) else f"{kind.__name__}: {exc}"
            with contextlib.suppress(Exception):  # the error itself matters more than its record
                self._save()
            hook(kind, exc, tb)

        sys.excepthook = record_and_report

    def _save(self, seconds: float | None = None) -> None:
        cfg = getattr(self, "cfg", None)
        device = getattr(self, "device", None)
        data = {
            "lesson": self.name,
            "quick": None if cfg is None else cfg.quick,
            "device": None if device is None else describe_device(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "config": None if cfg is None else config_to_dict(cfg),
            "outcomes": self.outcomes,
            "figures": self.figures,
            "data": self.data,
            "seconds": seconds if seconds is not None else time.perf_counter() - self._start,
            "finished": seconds is not None,
            "error": self.error,
        }
        _write_json_atomic(self.run_dir / "outcomes.json", data)
        extra = os.environ.get(OUTCOMES_ENV)
        if extra:
            _write_json_atomic(Path(extra), data)


def _script_title() -> str | None:
    """The first markdown heading of the running script ("# # 04 · The training loop" -> its text)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()[:20]
    except OSError:
        return None
    for line in lines:
        if line.startswith("# # "):
            return line[4:].strip()
    return None


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any finite value"
