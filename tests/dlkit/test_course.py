"""The course runner and the lesson helpers it reads: outcomes, figures, summary table, report."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from dlkit.course import COURSE, find_root, format_table, run_course, write_report
from dlkit.device import get_device
from dlkit.lesson import Lesson

LESSON = """
from dataclasses import dataclass
import matplotlib.pyplot as plt
from dlkit.lesson import Lesson, LessonConfig

@dataclass
class Config(LessonConfig):
    value: float = 0.9

lesson = Lesson("fundamentals/01_pytorch_basics", Config, quick={{"value": 0.8}})
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
lesson.savefig(fig, "curve")
lesson.record("score", lesson.cfg.value, min={min}, chance=0.25)
{extra}
lesson.finish()
"""


def make_course(tmp_path, *, min=0.5, extra="", second=None):
    (tmp_path / "fundamentals").mkdir()
    (tmp_path / "fundamentals" / "01_pytorch_basics.py").write_text(LESSON.format(min=min, extra=extra))
    if second is not None:
        (tmp_path / "fundamentals" / "02_neural_network_scratch.py").write_text(second)
    return tmp_path


def test_course_runs_lessons_and_writes_report(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    root = make_course(tmp_path, second="raise SystemExit('boom: no outcomes')\n")
    results = run_course(root, quick=True, runs_dir=root / "runs", timeout=120)
    assert [r.lesson for r in results] == list(COURSE[:2])
    first, second = results
    assert first.passed and first.outcomes["score"]["value"] == pytest.approx(0.8)  # quick override applied
    assert not second.passed and second.returncode != 0 and "boom" in second.log
    table = format_table(results)
    assert "score = 0.8" in table and ">= 0.5" in table and "1/2 lessons passed" in table
    report = write_report(results, root / "runs" / "course_report.md", quick=True, machine="test machine")
    text = report.read_text()
    assert "](fundamentals/01_pytorch_basics/curve.png)" in text
    assert (report.parent / "fundamentals/01_pytorch_basics/curve.png").exists()


def test_out_of_range_outcome_fails_the_lesson(tmp_path):
    root = make_course(tmp_path, min=0.85)
    (result,) = run_course(root, quick=True, runs_dir=root / "runs", timeout=120)
    assert result.returncode == 1 and not result.passed
    assert "out of range" in format_table([result])


def test_find_root(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--root"):
        find_root(tmp_path)
    assert find_root(make_course(tmp_path)) == tmp_path


def test_lesson_records_to_env_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DLKIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLKIT_OUTCOMES", str(tmp_path / "out.json"))
    lesson = Lesson("demo/lesson", argv=["--seed", "3"])
    assert lesson.record("loss", torch.tensor(0.25), max=1.0) == 0.25
    lesson.record("nan", float("nan"))
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["config"]["seed"] == 3 and data["outcomes"]["loss"]["passed"]
    assert not data["outcomes"]["nan"]["passed"]  # a NaN is never an expected outcome
    assert (tmp_path / "runs" / "demo" / "lesson" / "config.json").exists()
    with pytest.raises(SystemExit):
        lesson.finish()


def test_get_device():
    assert get_device("cpu").type == "cpu"
    assert get_device(None).type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="available devices are cpu"):
            get_device("cuda")


def test_course_lists_lessons_in_order():
    assert COURSE[0].startswith("fundamentals/01")
    assert (
        COURSE.index("computer_vision/05_faster_rcnn")
        == COURSE.index("computer_vision/04_object_detection") + 1
    )
    assert COURSE.index("nlp/05_transfer_learning") == COURSE.index("nlp/04_attention_transformers") + 1
    assert COURSE.index("nlp/01_word_embeddings") > COURSE.index("computer_vision/05_faster_rcnn")
    assert COURSE[-7:] == (
        "advanced/01_autoencoders", "advanced/02_variational_ae", "advanced/03_gans",
        "advanced/04_reinforcement_learning", "production/01_gpu_efficiency", "production/02_distributed",
        "production/03_deployment",
    )  # fmt: skip


def test_progress_bar_does_not_change_the_data_order(monkeypatch):
    """A progress bar must not touch the loader: making a DataLoader iterator draws a shuffling seed."""
    from torch.utils.data import DataLoader, TensorDataset

    from dlkit.progress import progress

    loader = DataLoader(TensorDataset(torch.arange(50)), batch_size=10, shuffle=True)
    torch.manual_seed(0)
    plain = torch.cat([x for (x,) in loader])
    for enabled in ("0", "1"):
        monkeypatch.setenv("DLKIT_PROGRESS", enabled)
        torch.manual_seed(0)
        assert torch.equal(torch.cat([x for (x,) in progress(loader, desc="test")]), plain)


def test_an_imported_ipykernel_is_not_a_notebook(tmp_path, monkeypatch):
    """A library or a test may import ipykernel in a plain process: a failed lesson still exits
    non-zero and progress bars stay text bars (a notebook bar needs a kernel and ipywidgets)."""
    import types

    from dlkit.progress import in_notebook, progress

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not in_notebook()
    # What a running kernel looks like to IPython: a shell whose config names the kernel app.
    kernel_shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: kernel_shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    assert in_notebook()
    fake_ipython.get_ipython = lambda: types.SimpleNamespace(config={})  # type: ignore[attr-defined]
    assert not in_notebook()  # IPython in a terminal is not a notebook either
    monkeypatch.setenv("DLKIT_PROGRESS", "1")
    assert list(progress(range(3), desc="test")) == [0, 1, 2]
    monkeypatch.setenv("DLKIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLKIT_OUTCOMES", str(tmp_path / "out.json"))
    lesson = Lesson("demo/lesson", argv=[])
    lesson.record("loss", 2.0, max=1.0)
    with pytest.raises(SystemExit):
        lesson.finish()


def test_an_expected_error_is_one_line_recorded_and_shown_by_the_course(tmp_path):
    """A UserError (a dataset that is missing, say) prints one line, no traceback, and the course says why."""
    failing = LESSON.format(min=0.5, extra="").replace(
        "fig, ax = plt.subplots()",
        "from dlkit.data import DatasetNotFoundError\n"
        "raise DatasetNotFoundError('data missing: put imdb/ on DLKIT_DATA, or run with --quick')\n"
        "fig, ax = plt.subplots()",
    )
    (tmp_path / "fundamentals").mkdir()
    (tmp_path / "fundamentals" / "01_pytorch_basics.py").write_text(failing)
    (result,) = run_course(tmp_path, quick=True, runs_dir=tmp_path / "runs", timeout=120)
    assert result.returncode == 1 and not result.passed
    assert "Traceback" not in result.log
    assert "error: data missing: put imdb/ on DLKIT_DATA" in result.log
    assert result.error.startswith("error: data missing") and result.why == result.error
    saved = json.loads(
        (tmp_path / "runs" / "fundamentals" / "01_pytorch_basics" / "outcomes.json").read_text()
    )
    assert saved["error"] == result.error and not saved["finished"]
    assert "failed: error: data missing" in format_table([result])
    report = write_report([result], tmp_path / "report.md", quick=True, machine="m").read_text()
    assert "**failed:** error: data missing" in report and "stopped: error: data missing" in report


def test_a_bug_keeps_its_traceback_and_is_recorded_too(tmp_path):
    (tmp_path / "fundamentals").mkdir()
    (tmp_path / "fundamentals" / "01_pytorch_basics.py").write_text(
        LESSON.format(min=0.5, extra="").replace(
            "fig, ax = plt.subplots()", "1 / 0\nfig, ax = plt.subplots()"
        )
    )
    (result,) = run_course(tmp_path, quick=True, runs_dir=tmp_path / "runs", timeout=120)
    assert "Traceback" in result.log and result.error == "ZeroDivisionError: division by zero"


def test_a_value_out_of_range_says_why_without_outcomes(tmp_path):
    (tmp_path / "fundamentals").mkdir()
    script = LESSON.format(min=0.5, extra="").replace('quick={"value": 0.8}', 'quick={"value": -0.8}')
    (tmp_path / "fundamentals" / "01_pytorch_basics.py").write_text(script)
    (result,) = run_course(tmp_path, quick=True, runs_dir=tmp_path / "runs", timeout=120)
    assert result.returncode == 2 and not result.outcomes
    assert result.why.endswith("error: --value must be >= 0, not -0.8")


def test_quick_report_says_it_is_a_smoke_test_and_where_the_real_results_are(tmp_path):
    root = make_course(tmp_path)
    results = run_course(root, quick=True, runs_dir=root / "runs", timeout=120)
    quick = write_report(results, root / "runs" / "quick.md", quick=True, machine="m").read_text()
    full = write_report(results, root / "runs" / "full.md", quick=False, machine="m").read_text()
    assert "Quick mode is a smoke test" in quick.split("|")[0]  # at the top, before the table
    assert "README" in quick and "full-mode" in quick
    assert "smoke test" not in full


def test_lesson_help_shows_the_title_not_a_config_repr(tmp_path):
    import subprocess
    import sys

    root = make_course(tmp_path)
    script = root / "fundamentals" / "01_pytorch_basics.py"
    script.write_text("# %% [markdown]\n# # 01 · A title for the help\n" + script.read_text())
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
    assert "01 · A title for the help" in out and "--quick" in out
    assert "Config(" not in out
