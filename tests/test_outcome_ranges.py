"""Every recorded outcome is a claim that a broken implementation would fail (dlkit.lesson.range_problems).

The rules are checked here on hand-made ranges; ``Lesson.record`` applies them to every outcome of every
lesson, in quick and full mode, so a lesson (in any track, added later too) whose range cannot fail
fails its own run, its test, and ``dlkit course``. A static pass over the lesson scripts catches the
plainest cases without running anything.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from dlkit.course import COURSE
from dlkit.lesson import approx, exactly, outcome_problems, range_problems

ROOT = Path(__file__).resolve().parents[1]
LESSONS = [lesson for lesson in COURSE if (ROOT / f"{lesson}.py").exists()]


@pytest.mark.parametrize(
    "name, lo, hi, chance, why",
    [
        ("loss", None, None, None, "no expected range"),
        ("seconds_train", 0.0, None, None, "time or speed"),
        ("yolo_train_seconds", None, 60.0, None, "time or speed"),
        ("images_per_s_batched", 1.0, None, None, "time or speed"),
        ("batched_speedup", 2.0, None, None, "time or speed"),
        ("test_acc", 0.7, None, None, "needs chance="),
        ("yolo_map50", 0.0, None, 0.0, "chance (0) lies inside"),  # the YOLO lesson's old quick floor
        ("fasttext_acc", 0.0, 1.0, 0.5, "chance (0.5) lies inside"),  # 0.42 on two classes passed it
        ("scratch_acc", 0.2, 1.0, 0.5, "chance (0.5) lies inside"),
        ("aug_minus_no_aug", -0.3, None, None, "floor above 0"),
        ("minilm_minus_scratch", -1.0, None, None, "floor above 0"),
        ("momentum_minus_sgd", 0.0, None, None, "floor above 0"),
        ("cnn_gain_over_baseline", -0.1, None, None, "floor above 0"),
        ("dropout_test_loss_ratio", None, 3.0, None, "ceiling below 1"),
        ("rcnn_loss_ratio", None, 1.0, None, "ceiling below 1"),
        ("pad_fraction_random", 0.0, None, None, "floor of 0 or less"),
        ("unigram_val_loss", 0.0, None, None, "floor of 0 or less"),
    ],
)
def test_ranges_that_cannot_fail_are_named(name, lo, hi, chance, why):
    problems = range_problems(name, lo, hi, chance)
    assert any(why in p for p in problems), problems


@pytest.mark.parametrize(
    "name, lo, hi, chance",
    [
        ("test_acc", 0.7, None, 0.1),
        ("yolo_map50", 0.05, None, 0.0),
        ("finite_difference_max_abs_diff", None, 1e-6, None),
        ("momentum_minus_sgd", 0.05, None, None),
        ("ce_minus_mse_adam", -0.05, 0.05, None),  # "they end close": a two-sided claim
        ("loss_ratio", None, 0.75, None),
        ("lm_val_loss", None, 2.8, 3.1),  # a loss below the unigram baseline's
        ("unigram_val_loss", None, 3.6, math.log(65)),
        ("mean_return", -150.0, None, -500.0),  # a negative floor, shown to be above chance
        ("receptive_field", 22, 22, None),
        ("map50_101_point_diff", None, 1e-6, None),  # a difference of mAPs, not an mAP
    ],
)
def test_ranges_that_can_fail_pass(name, lo, hi, chance):
    assert range_problems(name, lo, hi, chance) == []


def test_exactly_and_approx_are_two_meanings_with_two_names():
    assert exactly(22) == {"min": 22, "max": 22}  # one right value: a count, a shape
    assert approx(0.1) == {"min": 0.1 - 1e-9, "max": 0.1 + 1e-9}  # a float, up to rounding
    assert approx(1.0, tol=0.01) == {"min": 0.99, "max": 1.01}


def test_outcome_problems_reads_an_outcomes_json():
    data = {
        "lesson": "x/01",
        "outcomes": {
            "acc": {"value": 0.5, "min": 0.0, "max": 1.0, "chance": None, "passed": True},
            "max_diff": {"value": 0.0, "min": None, "max": 1e-9, "passed": True},
        },
    }
    (problem,) = outcome_problems(data)
    assert problem.startswith("x/01: acc: an accuracy-like outcome needs chance=")


def test_a_lesson_whose_range_cannot_fail_fails_its_run(tmp_path):
    script = tmp_path / "lesson.py"
    script.write_text(
        "from dlkit.lesson import Lesson\n"
        "lesson = Lesson('demo/honesty', argv=[])\n"
        "lesson.record('test_acc', 0.95, min=0.9, chance=0.1)\n"
        "lesson.record('seconds_train', 3.2, min=0.0)\n"
        "lesson.finish()\n"
    )
    out = tmp_path / "out.json"
    env = {"DLKIT_RUNS": str(tmp_path / "runs"), "DLKIT_OUTCOMES": str(out), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "RANGE CANNOT FAIL" in proc.stdout and "range cannot fail: a time or speed" in proc.stdout
    outcomes = json.loads(out.read_text())["outcomes"]
    assert outcomes["test_acc"]["passed"] and not outcomes["seconds_train"]["passed"]
    assert outcomes["seconds_train"]["problems"]


def _record_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "record"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "lesson"
    ]


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_literal_range_in_the_lesson_scripts_can_fail(lesson):
    """Without running anything: each ``lesson.record("name", ..., min=<number>, ...)`` whose name and
    bounds are literals obeys the rules (a bound computed at run time is checked by ``record`` itself)."""
    for call in _record_calls(ROOT / f"{lesson}.py"):
        if (
            not call.args
            or not isinstance(call.args[0], ast.Constant)
            or not isinstance(call.args[0].value, str)
        ):
            continue
        bounds: dict[str, float | None] = {"min": None, "max": None, "chance": None}
        literal = True
        for keyword in call.keywords:
            if keyword.arg in bounds:
                try:
                    bounds[keyword.arg] = float(ast.literal_eval(keyword.value))
                except ValueError:
                    literal = False  # e.g. 0.9 if full else 0.6: both branches are checked at run time
            elif keyword.arg is None:
                literal = False  # **exactly(...)
        if literal:
            name = call.args[0].value
            assert range_problems(name, bounds["min"], bounds["max"], bounds["chance"]) == [], (
                f"{lesson}: {name}"
            )
    assert _record_calls(ROOT / f"{lesson}.py"), f"{lesson} records no outcome"
