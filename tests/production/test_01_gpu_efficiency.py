"""Production 01 (GPU efficiency) in quick mode, on the CPU: every technique gets a row, the checks of
what must hold anywhere pass, and the measuring tools it uses agree with PyTorch's own.

Speeds are machine- and load-dependent: they are printed and written to ``table.md``, never asserted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from conftest import run_lesson
from torch import nn

from dlkit import perf
from dlkit.device import cpu_has_native_bf16
from dlkit.lesson import outcome_problems

LESSON = "production/01_gpu_efficiency.py"
OUTCOMES = {
    "technique_rows",
    "channels_last_rel_error",
    "bf16_rel_error",
    "feeds_agree",
    "activation_per_image_spread",
}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("production01")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "production" / "01_gpu_efficiency"
    return data


def test_records_what_it_teaches_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == OUTCOMES  # no compile_rel_error: quick mode does not compile
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    assert result["quick"] and result["finished"]


def test_the_tables_are_written_with_one_row_per_technique(result):
    tables = json.loads((result["run_dir"] / "table.json").read_text())
    assert "cpu" in tables["machine"] and "load" in tables["machine"]  # what it was measured on
    cnn, gpt = tables["tables"]["resnet_small"], tables["tables"]["char GPT"]
    assert [r["setting"] for r in cnn][0] == "float32 (naive)" and cnn[0]["vs naive"] == "1.00x"
    assert any("channels_last" in r["setting"] for r in cnn) and any("bf16" in r["setting"] for r in gpt)
    assert all(r["per_s"] > 0 for r in cnn + gpt)
    assert len(tables["tables"]["data feed"]) == 4  # PNG with 0 and 2 workers, DataLoader, sliced
    batches = tables["tables"]["batch size"]
    assert [r["batch"] for r in batches] == [4, 8, 16]
    assert batches[-1]["activations MiB"] == pytest.approx(4 * batches[0]["activations MiB"], rel=0.02)
    if cpu_has_native_bf16():  # the emulated side runs in a fresh process without bf16 instructions
        assert {r["bf16"] for r in tables["tables"]["bf16 native vs emulated"]} == {"native", "emulated"}
    assert "convolution" in (result["run_dir"] / "profile.txt").read_text()  # the profiler's table
    assert "| setting | per_s |" in (result["run_dir"] / "table.md").read_text()


def test_saved_activation_bytes_counts_what_autograd_keeps():
    """A Linear layer keeps its input for the weight's gradient, and ReLU its output: (B, 8) + (B, 16)
    float32 values; the weights are left out, and a tensor saved twice counts once."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    x = torch.randn(32, 8)  # a leaf without grad: saved by Linear for dW
    saved = perf.saved_activation_bytes(model, lambda: model(x).sum())
    assert saved == 32 * 8 * 4 + 32 * 16 * 4
    with torch.no_grad():  # nothing is saved without a graph
        assert perf.saved_activation_bytes(model, lambda: model(x).sum()) == 0


def test_time_per_call_warms_up_and_takes_the_median(monkeypatch):
    calls, clock = [], iter([0.0, 1.0, 1.0, 5.0, 5.0, 6.5])  # timings of 1.0, 4.0 and 1.5 s
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(clock))
    seconds = perf.time_per_call(lambda: calls.append(1), device=torch.device("cpu"), warmup=2, repeats=3)
    assert seconds == 1.5 and len(calls) == 2 + 3
