"""Production 03 (deployment) in quick mode: a release whose exports equal the eager model, a pickle
that runs code refused by ``weights_only``, int8 within its accuracy cost, and a served model that
answers what the model says, under a load test bounded in count and time. Latencies are not asserted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from conftest import ROOT, load_definitions, run_lesson

from dlkit.export import load_release, read_metadata
from dlkit.lesson import outcome_problems

pytest.importorskip("fastapi", reason="lesson 03 serves its model: the `serve` extra")
pytest.importorskip("onnxruntime", reason="lesson 03 exports to ONNX: the `export` extra")

LESSON = "production/03_deployment.py"
OUTCOMES = {
    "safetensors_max_abs_diff", "export_program_max_abs_diff", "onnx_max_abs_diff", "pickle_ran_code",
    "weights_only_refused_code", "int8_val_error_increase", "int8_logit_max_abs_diff", "int8_size_ratio",
    "served_answers_equal_model", "bad_requests_refused", "load_test_errors", "largest_batch_over_limit",
    "test_acc",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("production03")
    data = run_lesson(LESSON, tmp_path=tmp_path)
    data["run_dir"] = tmp_path / "runs" / "production" / "03_deployment"
    return data


def test_records_what_it_teaches_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == OUTCOMES
    assert all(o["passed"] for o in result["outcomes"].values())
    assert outcome_problems(result) == []
    assert result["quick"] and result["finished"]
    assert result["outcomes"]["test_acc"]["chance"] == pytest.approx(0.1)


def test_the_release_loads_and_says_how_it_was_checked(result):
    release = result["run_dir"] / "release"
    assert {p.name for p in release.iterdir()} == {
        "model.json",
        "model.safetensors",
        "model.onnx",
        "model.pt2",
    }
    metadata = read_metadata(release)
    assert metadata["architecture"]["name"] == "mlp" and len(metadata["classes"]) == 10
    assert metadata["parity"]["onnx_max_abs_diff"] <= 1e-4 and metadata["weights"]["sha256"]
    lesson = load_definitions(ROOT / LESSON)
    model, _ = load_release(release, lesson.build_model)  # rebuilt from the metadata alone
    x = torch.rand(3, metadata["architecture"]["inputs"])
    assert model(x).shape == (3, 10) and not model.training


def test_the_tables_bound_the_load_test(result):
    tables = json.loads((result["run_dir"] / "table.json").read_text())["tables"]
    assert [r["runtime"] for r in tables["latency"]] == [
        "PyTorch eager", "torch.export", "ONNX Runtime", "ONNX Runtime int8",
    ]  # fmt: skip
    rows = tables["load test"]
    assert [(r["max_batch"], r["concurrency"]) for r in rows] == [(1, 1), (1, 16), (32, 16)]
    assert all(r["errors"] == 0 and r["largest batch"] <= r["max_batch"] for r in rows)
    assert rows[0]["mean batch"] == 1  # one request at a time never forms a batch
    assert "weights_only=False ran: this line was printed by LOADING" in result["stdout"]


def test_a_pickle_runs_code_and_weights_only_refuses_it(tmp_path, capsys):
    """What the lesson shows, independently of its run: the oracle is torch.load itself."""
    lesson = load_definitions(ROOT / LESSON)
    torch.save({"w": torch.ones(2), "note": lesson.Payload()}, tmp_path / "x.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "x.pt", weights_only=True)
    capsys.readouterr()
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert "printed by LOADING" in capsys.readouterr().out
