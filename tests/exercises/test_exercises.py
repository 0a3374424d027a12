"""Every lesson's exercises: each check passes the reference solution and fails the stub and wrong answers.

Lessons define exercises in cells tagged ``exercise``; checks are in ``exercises/checks``, reference
solutions in ``exercises/solutions``, plausible wrong answers (the mistakes a check must catch) in
``tests/exercises/wrong``, each a module with ``WRONG = {exercise: [wrong_fn, ...]}``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from dlkit import exercises as ex
from dlkit.course import COURSE

LESSONS = [lesson for lesson in COURSE if (ROOT / f"{lesson}.py").is_file()]
WRONG_DIR = Path(__file__).parent / "wrong"


def _wrong(lesson: str) -> dict:
    path = WRONG_DIR / f"{lesson}.py"
    if not path.is_file():
        pytest.fail(f"{lesson}: no wrong answers in {path}")
    spec = importlib.util.spec_from_file_location("wrong_" + lesson.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_lesson_has_two_to_four_exercises_with_docstrings(lesson):
    found = ex.lesson_exercises(lesson, ROOT)
    assert 2 <= len(found) <= 4, f"{lesson} has {len(found)} exercises"
    namespace = ex.learner_namespace(lesson, ROOT)
    for exercise in found:
        doc = inspect.getdoc(namespace[exercise.name]) or ""
        assert len(doc) > 40, f"{exercise.id}: the docstring should state the task"
    # the notebook form runs the checks on its own definitions in a cell after the exercises
    assert "lesson.check_exercises(globals())" in (ROOT / f"{lesson}.py").read_text()


@pytest.mark.parametrize("lesson", LESSONS)
def test_stubs_are_not_started_and_the_reference_solutions_pass(lesson):
    stubs = ex.check_lesson(lesson, root=ROOT)
    assert [r.state for r in stubs] == [ex.NOT_STARTED] * len(stubs), ex.format_results(stubs)
    solutions = ex.load_solutions(lesson, ROOT)
    namespace = ex.learner_namespace(lesson, ROOT)
    for r in stubs:  # the solution answers the same question: same signature as the stub
        name = r.exercise.name
        assert hasattr(solutions, name), f"no reference solution for {r.exercise.id}"
        if inspect.isfunction(namespace[name]):
            stub_params = list(inspect.signature(namespace[name]).parameters)
            assert list(inspect.signature(getattr(solutions, name)).parameters) == stub_params, name
    results = ex.check_lesson(lesson, root=ROOT, answers=vars(solutions))
    assert [r.state for r in results] == [ex.PASSING] * len(results), ex.format_results(results)


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_check_fails_plausible_wrong_answers(lesson):
    wrong = _wrong(lesson)
    checks = ex.load_checks(lesson, ROOT)
    for exercise in ex.lesson_exercises(lesson, ROOT):
        answers = wrong.get(exercise.name, [])
        assert answers, f"{exercise.id}: no wrong answer shows that its check can fail"
        for answer in answers:
            result = ex.check_answer(exercise, answer, getattr(checks, f"check_{exercise.name}"))
            assert result.state == ex.FAILING, f"{exercise.id}: {answer.__name__} was not caught"
            assert result.message and "Traceback" not in result.message


def _answers_file(lesson: str, tmp_path: Path, replace: dict | None = None) -> Path:
    """A learner's copy of the exercise cells: the reference solutions, some replaced by wrong answers."""
    solutions = ex.load_solutions(lesson, ROOT)
    source = Path(solutions.__file__).read_text()
    path = tmp_path / "answers.py"
    extra = "".join(
        f"\n\n{inspect.getsource(fn)}\n{name} = {fn.__name__}\n" for name, fn in (replace or {}).items()
    )
    path.write_text(source + extra)
    return path


def test_check_command_says_what_is_wrong_in_words_and_exits_nonzero(tmp_path):
    lesson = "fundamentals/02_neural_network_scratch"
    wrong = _wrong(lesson)
    dlkit = [sys.executable, "-m", "dlkit.cli"]
    good = _answers_file(lesson, tmp_path)
    proc = subprocess.run(
        [*dlkit, "check", "fundamentals/02", "--file", str(good)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "3 of 3 passing" in proc.stdout, proc.stdout + proc.stderr
    bad = _answers_file(lesson, tmp_path, {"linear_backward": wrong["linear_backward"][0]})
    proc = subprocess.run(
        [*dlkit, "check", "fundamentals/02", "--file", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "2 of 3 passing" in proc.stdout
    assert (
        "FAIL  fundamentals/02.linear_backward" in proc.stdout
        and "shapes cannot be multiplied" in proc.stdout
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = subprocess.run([*dlkit, "check", "fundamentals/02.linear_backward", "--file", str(bad)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1 and "0 of 1 passing" in proc.stdout
    proc = subprocess.run([*dlkit, "check", "fundamentals/99"], capture_output=True, text=True)
    assert proc.returncode != 0 and "no lesson" in proc.stderr and "Traceback" not in proc.stderr


def test_the_notebook_form_keeps_the_exercise_cells_and_can_be_checked(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    lesson = "fundamentals/02_neural_network_scratch"
    notebook = jupytext.read(ROOT / f"{lesson}.py")
    tagged = [c for c in notebook.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(tagged) == len(ex.lesson_exercises(lesson, ROOT))
    path = tmp_path / "lesson.ipynb"
    path.write_text(jupytext.writes(notebook, "ipynb"))
    assert any("exercise" in c["metadata"].get("tags", []) for c in json.loads(path.read_text())["cells"])
    results = ex.check_lesson(lesson, root=ROOT, file=path)
    assert [r.state for r in results] == [ex.NOT_STARTED] * len(tagged)
    # a learner's broken cell is a message naming the line, not a crash
    tagged[0].source = tagged[0].source.replace("raise NotImplementedError", "return Z.relu(")
    path.write_text(jupytext.writes(notebook, "ipynb"))
    with pytest.raises(ex.UserError, match="lesson.ipynb"):
        ex.check_lesson(lesson, root=ROOT, file=path)


def test_a_learner_infinite_loop_is_stopped_with_a_message():
    exercise = ex.Exercise("fundamentals/02_neural_network_scratch", "spin", "spin", 1)

    def spin(x):
        while True:
            pass

    result = ex.check_answer(exercise, spin, lambda fn: fn(0), seconds=0.5)
    assert result.state == ex.FAILING and "did not finish" in result.message
