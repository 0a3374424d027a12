"""Every lesson is a jupytext percent script that opens as a notebook and reads like a chapter."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

from dlkit.course import COURSE

ROOT = Path(__file__).resolve().parents[1]
LESSONS = [lesson for lesson in COURSE if (ROOT / f"{lesson}.py").exists()]


def test_the_foundation_lessons_exist():
    assert LESSONS[:5] == list(COURSE[:5]), "fundamentals 01-05 are the start of the learning path"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_opens_as_a_notebook(lesson):
    text = (ROOT / f"{lesson}.py").read_text()
    notebook = jupytext.reads(text, fmt="py:percent")
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds[0] == "markdown", "a lesson starts with what you will learn"
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 5
    assert "lesson.finish()" in notebook.cells[-1].source or "lesson.finish()" in notebook.cells[-2].source
    assert jupytext.reads(jupytext.writes(notebook, fmt="ipynb"), fmt="ipynb").cells  # round trip
    lines = len(text.splitlines())
    assert 100 <= lines <= 450, f"{lesson} has {lines} lines; a lesson reads like a short chapter"
