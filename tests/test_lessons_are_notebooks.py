"""Every lesson is a jupytext percent script that opens as a notebook and reads like a chapter; its flags
say what they do; and one lesson runs, top to bottom, as a notebook in quick mode."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

import jupytext
import pytest
from conftest import load_definitions

from dlkit.config import KNOWN
from dlkit.course import COURSE

ROOT = Path(__file__).resolve().parents[1]
LESSONS = [lesson for lesson in COURSE if (ROOT / f"{lesson}.py").exists()]
MAX_LINES = 380  # a short chapter: aim at 150 to 350 lines
MAX_EXERCISE_LINES = 130  # then 2-4 exercise stubs: a docstring and `raise NotImplementedError` each


def test_the_foundation_lessons_exist():
    assert LESSONS[:5] == list(COURSE[:5]), "fundamentals 01-05 are the start of the learning path"


def test_the_learning_path_is_in_order_and_numbered():
    tracks = ["fundamentals", "computer_vision", "nlp", "advanced", "production"]
    assert [lesson.split("/")[0] for lesson in COURSE] == sorted(
        (lesson.split("/")[0] for lesson in COURSE), key=tracks.index
    )
    for track in tracks:
        numbers = [int(lesson.split("/")[1][:2]) for lesson in COURSE if lesson.startswith(track + "/")]
        assert numbers == list(range(1, len(numbers) + 1)), track  # 01, 02, ... with no gap
    assert len(set(COURSE)) == len(COURSE)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_opens_as_a_notebook(lesson):
    text = (ROOT / f"{lesson}.py").read_text()
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown", "a lesson starts with what you will learn"
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 5
    # the chapter ends with what was measured, then the exercises (tagged cells and the cell that checks them)
    heading = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## Exercises"))
    assert "lesson.finish()" in notebook.cells[heading - 1].source, "lesson.finish() ends the chapter"
    tagged = [c for c in notebook.cells[heading:] if "exercise" in c.metadata.get("tags", [])]
    assert 2 <= len(tagged) <= 4 and "lesson.check_exercises(globals())" in notebook.cells[-1].source
    assert jupytext.reads(jupytext.writes(notebook, fmt="ipynb"), fmt="ipynb").cells  # round trip
    lines = text.splitlines()
    chapter = next(i for i, line in enumerate(lines) if line.startswith("# ## Exercises"))
    assert 100 <= chapter <= MAX_LINES, f"{lesson} has {chapter} lines; a lesson reads like a short chapter"
    assert len(lines) - chapter <= MAX_EXERCISE_LINES, f"{lesson}: keep the exercise stubs short"


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_flag_has_help_and_a_range(lesson):
    """``--help`` says what each flag does, and every number says where it may lie (dlkit.config.flag)."""
    config = load_definitions(ROOT / f"{lesson}.py").Config
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        known = KNOWN.get(field.name)
        assert field.metadata.get("help") or (known and known.help), f"{lesson}: --{field.name} has no help"
        numeric = {int, float, int | None, float | None}
        if hints[field.name] in numeric and not known:
            bounds = {"min", "max", "above"} & set(field.metadata)
            assert bounds, f"{lesson}: --{field.name} needs a range: flag(..., min=, max=)"


@pytest.mark.slow
def test_a_lesson_runs_as_a_notebook_in_quick_mode(tmp_path):
    """jupytext turns the script into a notebook; a Jupyter kernel runs every cell with DLKIT_QUICK=1."""
    import nbclient

    notebook = jupytext.read(ROOT / "fundamentals" / "02_neural_network_scratch.py")
    outcomes = tmp_path / "outcomes.json"
    env = {"DLKIT_QUICK": "1", "DLKIT_RUNS": str(tmp_path / "runs"), "DLKIT_OUTCOMES": str(outcomes)}
    env |= {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "DLKIT_PROGRESS": "0"}
    old = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel is started from this process and inherits its environment
    try:
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        for key, value in old.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    data = json.loads(outcomes.read_text())
    assert data["quick"] and data["finished"] and data["error"] is None
    assert data["outcomes"] and all(o["passed"] for o in data["outcomes"].values())
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) >= 2  # the figures show inline, as in a notebook they should
    last = "".join(o.get("text", "") for o in notebook.cells[-1].get("outputs", []))
    assert "3 not started" in last  # the exercises' cells ran, and their check cell reported their state
