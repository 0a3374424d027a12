"""`dlkit course --quick` on a fresh offline machine: no datasets, no network, and every lesson passes,
with outcomes whose ranges could all fail (in every track, lessons added later included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from dlkit.course import COURSE
from dlkit.lesson import outcome_problems


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 22 lessons, each its own process: about 5 minutes on an idle 2-core CPU
def test_quick_course_passes_offline_with_no_data(tmp_path):
    env = {
        **os.environ,
        "DLKIT_DATA": str(tmp_path / "no_data"),  # nothing on the data search path...
        "DLKIT_CACHE": str(tmp_path / "empty_cache"),  # ...nothing downloaded before...
        "DLKIT_SYSTEM_DATA": "0",  # ...no Debian dataset packages...
        "http_proxy": "http://127.0.0.1:9",  # ...and any download attempt fails at once
        "https_proxy": "http://127.0.0.1:9",
    }
    env.pop("no_proxy", None)
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlkit.cli",
            "course",
            "--quick",
            "--root",
            str(ROOT),
            "--runs-dir",
            str(runs),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    n = sum((ROOT / f"{lesson}.py").exists() for lesson in COURSE)
    assert f"{n}/{n} lessons passed" in proc.stdout
    report = (runs / "course_report.md").read_text()
    assert "FAIL" not in report
    for lesson in ("01_pytorch_basics", "04_training_loop", "05_optimization"):
        assert f"fundamentals/{lesson}" in report
    assert "digits" in report  # the real data that ships with scikit-learn
    assert report.index("Quick mode is a smoke test") < report.index("| lesson |")  # said at the top
    problems = []
    for path in sorted((runs / "course").glob("*.json")):
        data = json.loads(path.read_text())
        problems += outcome_problems(data)
        assert data["outcomes"], f"{data['lesson']} recorded no outcome"
        assert not any(k.startswith("seconds") for k in data["outcomes"]), data["lesson"]
    assert problems == []
    assert not (tmp_path / "empty_cache").exists() or not any((tmp_path / "empty_cache").rglob("*.gz"))
