"""Exercises that check themselves.

Every lesson ends with 2-4 exercises: code cells tagged ``exercise`` (``# %% tags=["exercise"]`` in
the percent script, a cell tag in the notebook). Each holds one function or class whose docstring
states the task and whose body raises ``NotImplementedError`` until the learner fills it in. Each
cell is self-contained: it imports what it needs.

The checks live in ``exercises/checks/<part>/<lesson>.py``, one ``check_<name>(answer)`` per
exercise: they call the learner's code on small inputs and compare it with a reference behaviour
(PyTorch, scikit-learn or torchmetrics as the oracle where one exists), raising :class:`CheckFailed`
with a sentence the learner can act on (a shape, a wrong value at an index, a missing ``detach``).
Reference solutions live in ``exercises/solutions/<part>/<lesson>.py`` under the same names; the test
suite runs every check on them, on the stubs and on plausible wrong answers.

Commands::

    dlkit exercises                       # every lesson's exercises and their state
    dlkit check fundamentals/02           # run one lesson's checks
    dlkit check fundamentals/02.mse_grad  # one exercise
    dlkit check nlp/04 --file my_copy.ipynb

In a notebook, the cell after the exercises runs :func:`report` on the notebook's own definitions.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
import re
import signal
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit.errors import UserError

__all__ = [
    "CheckFailed",
    "Exercise",
    "Result",
    "check_answer",
    "check_lesson",
    "expect",
    "expect_close",
    "expect_no_grad",
    "expect_tensor",
    "find_lesson",
    "learner_namespace",
    "lesson_exercises",
    "load_checks",
    "load_solutions",
    "report",
]

EXERCISE_TAG = "exercise"
_CELL = re.compile(r"^# %%")
_TAGGED = re.compile(r"""tags\s*=\s*\[[^\]]*["']exercise["']""")
NOT_STARTED, FAILING, PASSING = "not started", "failing", "passing"
CHECK_SECONDS = 120  # a learner's infinite loop ends here, with a message


class CheckFailed(AssertionError):
    """The learner's answer is wrong; the message says how, in one or two sentences."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: the lesson it belongs to, the function or class name, its docstring's first line."""

    lesson: str  # e.g. "fundamentals/02_neural_network_scratch"
    name: str
    title: str
    line: int  # where it is defined in the lesson file

    @property
    def id(self) -> str:
        """``fundamentals/02.leaky_relu_grad``: what ``dlkit check`` takes."""
        return f"{short_name(self.lesson)}.{self.name}"


@dataclass(frozen=True)
class Result:
    exercise: Exercise
    state: str  # NOT_STARTED, FAILING or PASSING
    message: str = ""


# --- finding lessons and their exercise cells -------------------------------------------------


def short_name(lesson: str) -> str:
    """``computer_vision/05_faster_rcnn`` -> ``computer_vision/05``: what ``dlkit check`` takes."""
    part, _, file = lesson.rpartition("/")
    return f"{part}/{file.split('_', 1)[0]}"


def _root(root: str | Path | None) -> Path:
    from dlkit.course import find_root

    return find_root(root)


def find_lesson(spec: str, root: str | Path | None = None) -> str:
    """``fundamentals/02``, ``fundamentals/02_neural_network_scratch(.py)`` -> the lesson's course id."""
    from dlkit.course import COURSE

    key = spec.strip().removesuffix(".py").strip("/")
    matches = [lesson for lesson in COURSE if lesson == key or lesson.startswith(key + "_")]
    if len(matches) != 1:
        parts = sorted({lesson.split("/")[0] for lesson in COURSE})
        close = difflib.get_close_matches(key.split("/")[0], parts, n=1)
        near = [lesson for lesson in COURSE if close and lesson.startswith(close[0] + "/")] or list(COURSE)
        raise UserError(
            f"no lesson {spec!r}: name one as PART/NN, e.g. {', '.join(short_name(n) for n in near[:3])}"
            if not matches
            else f"{spec!r} names several lessons: {', '.join(matches)}"
        )
    return matches[0]


def _split_spec(spec: str, root: str | Path | None) -> tuple[str, str | None]:
    """``part/NN[_name][.exercise]`` -> (lesson id, exercise name or None)."""
    spec = spec.removesuffix(".py")
    head, _, name = spec.rpartition(".") if "." in spec.rsplit("/", 1)[-1] else (spec, "", "")
    return find_lesson(head or spec, root), (name or None)


def _exercise_source(path: Path) -> tuple[str, str]:
    """The exercise cells of a lesson file as one compilable source, and the filename to compile it as.

    For a percent script, every line outside an exercise cell becomes blank, so line numbers in
    errors are the lesson file's own. For a notebook, the exercise cells are joined in order.
    """
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (ValueError, KeyError) as exc:
            raise UserError(f"{path} is not a readable notebook ({exc})") from None
        chunks = []
        for cell in cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if cell.get("cell_type") == "code" and EXERCISE_TAG in tags:
                text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                chunks.append(text)
        return "\n\n".join(chunks), str(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not any(_CELL.match(line) for line in lines):  # a plain module (e.g. a learner's own answers file)
        return text, str(path)
    keep, inside = [], False
    for line in lines:
        if _CELL.match(line):
            inside = bool(_TAGGED.search(line))
            keep.append("")
            continue
        keep.append(line if inside else "")
    return "\n".join(keep) + "\n", str(path)


def lesson_path(lesson: str, root: str | Path | None = None) -> Path:
    return _root(root) / f"{lesson}.py"


def lesson_exercises(
    lesson: str, root: str | Path | None = None, file: str | Path | None = None
) -> list[Exercise]:
    """The exercises a lesson defines, in order: each top-level function or class in its exercise cells."""
    import ast

    path = Path(file) if file else lesson_path(lesson, root)
    source, filename = _exercise_source(path)
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise UserError(f"{filename}, line {exc.lineno}: {exc.msg} (fix it, then check again)") from None
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            found.append(Exercise(lesson, node.name, doc[0] if doc else node.name, node.lineno))
    return found


def learner_namespace(
    lesson: str, root: str | Path | None = None, file: str | Path | None = None
) -> dict[str, Any]:
    """Run a lesson's exercise cells (only those) as a module; return its namespace."""
    path = Path(file) if file else lesson_path(lesson, root)
    source, filename = _exercise_source(path)
    name = "dlkit_exercise_" + re.sub(r"\W", "_", lesson)
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # dataclasses and pickling look their module up
    try:
        exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - the learner's own cells
    except SyntaxError as exc:
        raise UserError(f"{filename}, line {exc.lineno}: {exc.msg} (fix it, then check again)") from None
    except Exception as exc:  # noqa: BLE001 - a learner's cell failing to run is a message, not a crash
        raise UserError(
            f"the exercise cells of {filename} failed to run: {_learner_error(exc, filename)}"
        ) from None
    return module.__dict__


def _load_by_path(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_checks(lesson: str, root: str | Path | None = None) -> types.ModuleType:
    path = _root(root) / "exercises" / "checks" / f"{lesson}.py"
    if not path.is_file():
        raise UserError(f"{lesson} has no checks yet ({path} is missing)")
    return _load_by_path(path, "dlkit_checks_" + re.sub(r"\W", "_", lesson))


def load_solutions(lesson: str, root: str | Path | None = None) -> types.ModuleType:
    path = _root(root) / "exercises" / "solutions" / f"{lesson}.py"
    if not path.is_file():
        raise UserError(f"{lesson} has no reference solutions ({path} is missing)")
    return _load_by_path(path, "dlkit_solutions_" + re.sub(r"\W", "_", lesson))


# --- running checks ---------------------------------------------------------------------------


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise CheckFailed(f"did not finish within {seconds:.0f} s (an endless loop, or far too much work?)")

    try:
        previous = signal.signal(signal.SIGALRM, stop)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _quiet_torch() -> Iterator[None]:
    """One thread (the checks' inputs are tiny) and the caller's random state untouched afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


def _learner_error(exc: BaseException, filename: str | None) -> str:
    """``TypeError: ... (line 12 of fundamentals/02...py)``: the learner's frame, not a traceback."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if filename and f.filename == filename]
    if mine and filename:
        where = f" (line {mine[-1].lineno} of {Path(filename).name}: `{(mine[-1].line or '').strip()}`)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


def check_answer(exercise: Exercise, answer: Any, check: Callable[[Any], Any], *, filename: str | None = None,
                 seconds: float = CHECK_SECONDS) -> Result:  # fmt: skip
    """Run one check on one answer; every outcome (including a crash in the learner's code) is a Result."""
    if answer is None:
        return Result(exercise, NOT_STARTED, f"`{exercise.name}` is not defined")
    try:
        with _time_limit(seconds), _quiet_torch():
            check(answer)
    except NotImplementedError:
        return Result(exercise, NOT_STARTED, "still raises NotImplementedError: replace the stub's body")
    except CheckFailed as exc:
        return Result(exercise, FAILING, str(exc))
    except Exception as exc:  # noqa: BLE001 - the learner's code raised: say what and where
        return Result(exercise, FAILING, "your code raised " + _learner_error(exc, filename))
    return Result(exercise, PASSING)


def check_lesson(
    lesson: str,
    only: str | None = None,
    *,
    root: str | Path | None = None,
    file: str | Path | None = None,
    answers: dict[str, Any] | None = None,
) -> list[Result]:
    """Check a lesson's exercises: the learner's cells (or ``answers``, e.g. a notebook's globals)."""
    exercises = lesson_exercises(lesson, root)
    if only is not None:
        exercises = [e for e in exercises if e.name == only]
        if not exercises:
            names = ", ".join(e.name for e in lesson_exercises(lesson, root))
            raise UserError(f"{lesson} has no exercise {only!r}; it has: {names}")
    checks = load_checks(lesson, root)
    filename = str(Path(file) if file else lesson_path(lesson, root))
    if answers is None:
        answers = learner_namespace(lesson, root, file)
    results = []
    for exercise in exercises:
        check = getattr(checks, f"check_{exercise.name}", None)
        if check is None:
            raise UserError(f"{lesson}: no check for exercise {exercise.name!r} in exercises/checks")
        results.append(check_answer(exercise, answers.get(exercise.name), check, filename=filename))
    return results


def format_results(results: Sequence[Result], *, verbose: bool = True) -> str:
    marks = {PASSING: "PASS", FAILING: "FAIL", NOT_STARTED: "TODO"}
    lines = []
    for r in results:
        lines.append(f"  {marks[r.state]}  {r.exercise.id}: {r.exercise.title}")
        if verbose and r.message and r.state != PASSING:
            lines.append(f"        {r.message}")
    return "\n".join(lines)


def report(namespace: dict[str, Any], lesson: str, root: str | Path | None = None) -> list[Result]:
    """Check the exercises as they are defined in ``namespace`` (a notebook's globals) and print the states.

    Never raises for a wrong answer: a lesson run as a script reaches this cell with the stubs still
    in place, and says so.
    """
    results = check_lesson(lesson, root=root, answers=namespace)
    counts = {s: sum(r.state == s for r in results) for s in (PASSING, FAILING, NOT_STARTED)}
    print(
        f"# exercises: {counts[PASSING]} passing, {counts[FAILING]} failing, "
        f"{counts[NOT_STARTED]} not started"
    )
    print(format_results(results, verbose=counts[NOT_STARTED] < len(results)))
    if counts[PASSING] < len(results):
        short = short_name(lesson)
        print(f"  fill in the cells above, then run this cell again (or `dlkit check {short}` in a terminal)")
    return results


# --- what checks use to compare ---------------------------------------------------------------


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def expect_close(actual: Any, expected: float, what: str, *, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """A number: ``actual`` must be a real number within ``atol + rtol * |expected|`` of ``expected``."""
    try:
        value = float(actual)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, got {type(actual).__name__}") from None
    if math.isnan(value):
        raise CheckFailed(f"{what} is NaN; expected {_fmt(expected)}")
    if abs(value - expected) > atol + rtol * abs(expected):
        raise CheckFailed(f"{what} is {_fmt(value)}; expected {_fmt(expected)}")


def expect_tensor(actual: Any, expected: Any, what: str, *, rtol: float = 1e-4, atol: float = 1e-5,
                  reference: str = "") -> None:  # fmt: skip
    """A tensor: type, shape, no NaN, then values; the message names the worst index and both values.

    ``reference`` names the oracle in the message (e.g. "F.softmax"). A result that matches the
    expected values transposed, or negated, says so.
    """
    import torch

    against = f" ({reference})" if reference else ""
    if not isinstance(actual, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(actual).__name__}")
    expected = torch.as_tensor(expected)
    if tuple(actual.shape) != tuple(expected.shape):
        hint = ""
        if actual.dim() == 2 and tuple(actual.shape[::-1]) == tuple(expected.shape):
            hint = " (it looks transposed)"
        elif actual.numel() == expected.numel():
            hint = " (same number of elements: a reshape or a missing/extra dimension?)"
        raise CheckFailed(
            f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}{against}{hint}"
        )
    if not actual.dtype.is_floating_point and expected.dtype.is_floating_point:
        raise CheckFailed(
            f"{what} has dtype {actual.dtype}; expected a floating-point tensor like {expected.dtype}"
        )
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    if torch.isnan(a).any() and not torch.isnan(e).any():
        index = tuple(int(i) for i in torch.nonzero(torch.isnan(a))[0])
        raise CheckFailed(f"{what} has NaN at index {index} (an overflow, a log of 0 or a division by 0?)")
    bad = (a - e).abs() > atol + rtol * e.abs()
    if bad.any():
        worst = int(torch.argmax(torch.where(bad, (a - e).abs(), torch.zeros_like(a))))
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), a.shape)) if a.dim() else ()
        hint = ""
        if a.dim() == 2 and a.shape[0] == a.shape[1] and torch.allclose(a.T, e, rtol=rtol, atol=atol):
            hint = " (it matches the expected values transposed)"
        elif torch.allclose(-a, e, rtol=rtol, atol=atol):
            hint = " (it matches with the sign flipped)"
        raise CheckFailed(
            f"{what} at index {index} is {_fmt(a[index].item())}; expected {_fmt(e[index].item())}{against} "
            f"({int(bad.sum())} of {a.numel()} values differ){hint}"
        )


def expect_no_grad(actual: Any, what: str) -> None:
    """A result that should not carry autograd history (a metric, a target, a logged value)."""
    import torch

    if isinstance(actual, torch.Tensor) and actual.requires_grad:
        raise CheckFailed(
            f"{what} still tracks gradients (requires_grad=True): call .detach() on it, "
            "or compute it under torch.no_grad()"
        )


# --- the commands -----------------------------------------------------------------------------


def list_main(lessons: Sequence[str] = (), root: str | Path | None = None) -> int:
    """``dlkit exercises``: each lesson's exercises and their state."""
    from dlkit.course import COURSE

    chosen = [find_lesson(s, root) for s in lessons] if lessons else list(COURSE)
    totals = {PASSING: 0, FAILING: 0, NOT_STARTED: 0}
    for lesson in chosen:
        if not lesson_path(lesson, root).is_file():
            continue
        try:
            results = check_lesson(lesson, root=root)
        except UserError as exc:
            print(f"{lesson}: {exc}")
            continue
        print(lesson)
        print(format_results(results, verbose=False))
        for r in results:
            totals[r.state] += 1
    print(f"\n{totals[PASSING]} passing, {totals[FAILING]} failing, {totals[NOT_STARTED]} not started. "
          "Run `dlkit check PART/NN` (e.g. `dlkit check fundamentals/02`) for what to fix.")  # fmt: skip
    return 0


def check_main(spec: str, file: str | None = None, root: str | Path | None = None) -> int:
    """``dlkit check LESSON[.EXERCISE]``: run the checks, say what failed; exit 1 unless all pass."""
    lesson, only = _split_spec(spec, root)
    results = check_lesson(lesson, only, root=root, file=file)
    print(format_results(results))
    passed = sum(r.state == PASSING for r in results)
    print(f"{passed} of {len(results)} passing")
    return 0 if passed == len(results) else 1
