"""The course runner: every lesson that exists, in learning-path order, each in its own process.

``dlkit course --quick`` runs each lesson with ``--quick``, reads the outcomes it recorded (see
:mod:`dlkit.lesson`), prints a summary table and writes ``runs/course_report.md`` with the figures
linked. A lesson passes when it exits 0 and every outcome it recorded is inside its expected range
(and that range could fail: see :func:`dlkit.lesson.range_problems`). When a lesson stops on an
error, the report says which (the one line of a :class:`dlkit.errors.UserError`, e.g. a dataset that
is missing and how to get it), not only that it failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["COURSE", "LessonResult", "find_root", "format_table", "run_course", "run_lesson", "write_report"]

# The learning path: basics, from scratch, nn.Module, training, vision, NLP, generative models, RL,
# then production (GPU efficiency, distributed training, deployment).
COURSE: tuple[str, ...] = (
    "fundamentals/01_pytorch_basics",
    "fundamentals/02_neural_network_scratch",
    "fundamentals/03_pytorch_nn_module",
    "fundamentals/04_training_loop",
    "fundamentals/05_optimization",
    "computer_vision/01_image_classification",
    "computer_vision/02_transfer_learning",
    "computer_vision/03_data_augmentation",
    "computer_vision/04_object_detection",
    "computer_vision/05_faster_rcnn",
    "nlp/01_word_embeddings",
    "nlp/02_text_classification",
    "nlp/03_sequence_models",
    "nlp/04_attention_transformers",
    "nlp/05_transfer_learning",
    "advanced/01_autoencoders",
    "advanced/02_variational_ae",
    "advanced/03_gans",
    "advanced/04_reinforcement_learning",
    "production/01_gpu_efficiency",
    "production/02_distributed",
    "production/03_deployment",
)

QUICK_MODE_NOTE = (
    "Quick mode is a smoke test: tiny data and few steps, offline, so that every lesson runs in seconds "
    "on a CPU. Its outcomes check that each lesson's code works and still learns something measurable, "
    "not how well it learns. The real results are the full-mode runs (`dlkit course` without `--quick`, "
    "on the real datasets): the README's learning-path table lists them, measured, with their machine."
)


@dataclass
class LessonResult:
    """What one lesson run produced."""

    lesson: str
    returncode: int
    seconds: float
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    log: str = ""
    error: str = ""  # why the lesson stopped, when it did: its one-line error, else its last output line

    @property
    def passed(self) -> bool:
        return (
            self.returncode == 0 and bool(self.outcomes) and all(o["passed"] for o in self.outcomes.values())
        )

    @property
    def why(self) -> str:
        """Why the lesson failed, in one line ("" when it passed)."""
        if self.passed:
            return ""
        if self.error:
            return self.error
        bad = [name for name, o in self.outcomes.items() if not o["passed"]]
        if bad:
            return "outcomes out of range or with a range that cannot fail: " + ", ".join(bad)
        return (
            "it recorded no outcome" if self.returncode == 0 else f"it exited with status {self.returncode}"
        )


def find_root(root: str | Path | None = None) -> Path:
    """The course folder: ``root`` if given, else the working directory or the checkout dlkit came from."""
    candidates = [Path(root)] if root else [Path.cwd(), Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if (candidate / "fundamentals").is_dir():
            return candidate
    raise FileNotFoundError(
        f"no course found in {', '.join(map(str, candidates))}: run from the repository root "
        "(the folder holding fundamentals/) or pass --root"
    )


def run_lesson(
    root: Path, lesson: str, *, quick: bool, device: str | None, runs_dir: Path, timeout: float
) -> LessonResult:
    """Run ``root/<lesson>.py`` in a fresh Python process and collect its outcomes."""
    name = lesson.replace("/", "__")
    outcomes_path = runs_dir / "course" / f"{name}.json"
    log_path = runs_dir / "course" / f"{name}.log"
    outcomes_path.parent.mkdir(parents=True, exist_ok=True)
    outcomes_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(root / f"{lesson}.py")]
    cmd += ["--quick"] if quick else []
    cmd += ["--device", device] if device else []
    env = {
        **os.environ,
        "DLKIT_OUTCOMES": str(outcomes_path.resolve()),
        "DLKIT_RUNS": str(runs_dir.resolve()),
        "MPLBACKEND": "Agg",
        "DLKIT_PROGRESS": os.environ.get("DLKIT_PROGRESS", "0"),
        "PYTHONUNBUFFERED": "1",
    }
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        returncode, log = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        returncode, log = -1, out + f"\n[dlkit course] timed out after {timeout:.0f} s\n"
    seconds = time.perf_counter() - start
    log_path.write_text(log)
    result = LessonResult(lesson, returncode, seconds, log=log)
    finished = False
    if outcomes_path.exists():
        recorded = json.loads(outcomes_path.read_text())
        result.outcomes = recorded.get("outcomes", {})
        result.figures = recorded.get("figures", [])
        result.data = recorded.get("data", {})
        result.error = recorded.get("error") or ""
        finished = bool(recorded.get("finished"))
    if returncode != 0 and not result.error and not finished:  # it stopped before lesson.finish()
        result.error = _last_error_line(log)
    return result


def _last_error_line(log: str) -> str:
    """The line that says why a process stopped: argparse's or dlkit's "error: ...", else a traceback's
    last line, else the last line of output."""
    lines = [line.strip() for line in log.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or ": error: " in line:
            return line
    return lines[-1] if lines else ""


def run_course(
    root: Path,
    *,
    quick: bool,
    device: str | None = None,
    only: Sequence[str] = (),
    runs_dir: Path = Path("runs"),
    timeout: float = 3600,
) -> list[LessonResult]:
    """Run every existing lesson of :data:`COURSE` (or those matching ``only``) and print progress."""
    lessons = [ls for ls in COURSE if (root / f"{ls}.py").exists()]
    if only:
        lessons = [ls for ls in lessons if any(part in ls for part in only)]
    if not lessons:
        raise FileNotFoundError(f"no lessons to run under {root} (only={list(only)})")
    results = []
    for i, lesson in enumerate(lessons, 1):
        print(f"[{i}/{len(lessons)}] {lesson} ...", end=" ", flush=True)
        result = run_lesson(root, lesson, quick=quick, device=device, runs_dir=runs_dir, timeout=timeout)
        print(f"{'PASS' if result.passed else 'FAIL'} ({result.seconds:.1f} s)", flush=True)
        if not result.passed:
            print(f"    why: {result.why}")
            if not result.error:  # an outcome failed: its lines of the log say by how much
                print("    " + "\n    ".join(result.log.strip().splitlines()[-15:]))
        results.append(result)
    return results


def _expected(o: dict[str, Any]) -> str:
    lo, hi = o.get("min"), o.get("max")
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    return f">= {lo:g}" if lo is not None else (f"<= {hi:g}" if hi is not None else "finite")


def _short(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _flag(o: dict[str, Any]) -> str:
    return "  <-- range cannot fail" if o.get("problems") else "  <-- out of range"


def _rows(results: Sequence[LessonResult]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for r in results:
        status = "PASS" if r.passed else ("FAIL" if r.returncode == 0 else f"FAIL (exit {r.returncode})")
        stopped = f"(stopped: {_short(r.error)})" if r.error else "(no outcomes recorded)"
        items: list[tuple[str, dict[str, Any] | None]] = [*r.outcomes.items()] or [(stopped, None)]
        for j, (name, o) in enumerate(items):
            value = f"{name} = {o['value']:.4g}" if o else name
            expected = _expected(o) + ("" if o["passed"] else _flag(o)) if o else ""
            first = j == 0
            rows.append(
                (
                    r.lesson if first else "",
                    value,
                    expected,
                    f"{r.seconds:.1f} s" if first else "",
                    status if first else "",
                )
            )
    return rows


def format_table(results: Sequence[LessonResult]) -> str:
    """A plain-text summary table: lesson, recorded outcomes, expected range, time, pass/fail."""
    header = ("lesson", "outcome", "expected", "time", "result")
    rows = [header, *_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(r.seconds for r in results)
    passed = sum(r.passed for r in results)
    lines.append(f"\n{passed}/{len(results)} lessons passed in {total:.1f} s")
    lines += [f"  {r.lesson} failed: {r.why}" for r in results if not r.passed]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text that stays in its markdown table cell or list item: no pipes, one line."""
    return " ".join(text.replace("|", "\\|").split())


def write_report(results: Sequence[LessonResult], path: Path, *, quick: bool, machine: str) -> Path:
    """``runs/course_report.md``: the summary table, then each lesson's data and figures (linked)."""
    mode = "quick" if quick else "full"
    lines = [
        f"# Course report ({mode} mode)",
        "",
        *([QUICK_MODE_NOTE, ""] if quick else []),
        f"Machine: {machine}. Generated {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| lesson | outcome | expected | time | result |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in _rows(results)]
    passed = sum(r.passed for r in results)
    lines += [
        "",
        f"**{passed}/{len(results)} lessons passed** in {sum(r.seconds for r in results):.1f} s.",
        "",
    ]
    for r in results:
        lines += [f"## {r.lesson}", ""]
        lines += [f"- **failed:** {_cell(r.why)}"] if not r.passed else []
        lines += [f"- data ({key}): {desc}" for key, desc in r.data.items()]
        log_name = r.lesson.replace("/", "__") + ".log"
        lines += [f"- log: [course/{log_name}](course/{log_name})", ""]
        for fig in r.figures:
            rel = os.path.relpath(Path(fig).resolve(), path.parent.resolve())
            lines += [f"![{Path(fig).stem}]({rel})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
