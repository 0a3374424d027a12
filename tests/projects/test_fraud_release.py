"""The fraud detector's release (safetensors + model.json with the feature order, scaling statistics and
threshold; ONNX equal to PyTorch), evaluate, and predict: chunked scoring equals whole-file scoring,
bad rows are named by line and skipped, Parquet equals CSV."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.errors import UserError
from dlkit.tabular import synthetic_transactions, write_table
from projects.fraud_detector import evaluate, export, predict, train
from projects.fraud_detector.predict import FraudPredictor, score_file

pytestmark = pytest.mark.slow  # quick training, an ONNX export, evaluation with LOF: 20-60 s on busy cores


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Quick runs of the autoencoder and the MLP, exported with ONNX."""
    root = tmp_path_factory.mktemp("fraud")
    for model in ("autoencoder", "mlp"):
        train.main(
            ["--quick", "--model", model, "--runs-dir", str(root), "--run-name", model, "--threads", "1"]
        )
        assert export.main(["--run-dir", str(root / model)]) == 0
    return root


@pytest.fixture(scope="module")
def transactions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """1,000 new synthetic transactions as a CSV (columns in another order, plus Class and an extra one)."""
    data = synthetic_transactions(1000, 0.02, seed=7)
    x = data.x.numpy()
    columns = list(reversed(data.features))
    folder = tmp_path_factory.mktemp("tx")
    path = write_table(
        folder / "tx.csv", np.c_[x[:, ::-1], np.arange(1000)], [*columns, "id"], data.y.numpy()
    )
    return path, x


@pytest.mark.parametrize("model", ["autoencoder", "mlp"])
def test_the_release_keeps_features_scaling_and_threshold(runs: Path, model: str) -> None:
    release = runs / model / "release"
    assert {p.name for p in release.iterdir()} == {"model.safetensors", "model.json", "model.onnx"}
    meta = json.loads((release / "model.json").read_text())
    info = json.loads((runs / model / "model_info.json").read_text())
    assert meta["features"] == [f"V{i}" for i in range(1, 29)] + ["Amount"]
    assert meta["preprocessing"]["center"] == info["preprocessing"]["center"]
    assert meta["preprocessing"]["log1p_columns"] == ["Amount"] and len(meta["preprocessing"]["scale"]) == 29
    assert meta["threshold"]["value"] == info["threshold"]["value"] and meta["costs"] == {
        "miss": 100.0,
        "review": 1.0,
    }
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-4 and "SYNTHETIC" in meta["dataset"]
    predictor = FraudPredictor.from_release(release, "cpu")
    scorer, _ = train.load_run(str(runs / model))
    x = synthetic_transactions(300, seed=9).x[:, 1:]  # without Time
    with torch.no_grad():
        assert np.allclose(predictor.score(x), scorer(x).double().numpy(), rtol=1e-6)
    assert str(runs) not in json.dumps(predictor.describe())  # no server paths for clients


@pytest.mark.parametrize("model", ["autoencoder", "mlp"])
def test_onnx_runtime_scores_like_pytorch(runs: Path, model: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    release = runs / model / "release"
    predictor = FraudPredictor.from_release(release, "cpu")
    x = synthetic_transactions(500, 0.05, seed=11).x[:, 1:].numpy()
    session = ort.InferenceSession(str(release / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": x})[0]
    assert got.shape == (500,)
    assert np.allclose(got, predictor.score(x), rtol=1e-4, atol=1e-6)


def test_export_refuses_a_graph_outside_the_tolerance(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="export failed, nothing written"):
        export.main(
            [
                "--run-dir",
                str(runs / "autoencoder"),
                "--out",
                str(tmp_path / "r"),
                "--atol",
                "1e-15",
                "--rtol",
                "0",
            ]
        )
    assert not (tmp_path / "r").exists()


def test_evaluate_reports_metrics_baselines_and_calibration(runs: Path) -> None:
    assert evaluate.main(["--run-dir", str(runs / "mlp")]) == 0
    result = json.loads((runs / "mlp" / "evaluation_test.json").read_text())
    model = result["model"]
    assert set(model["alert_budgets"]) == {"top 0.1%", "top 1%"} and model["ap"] > 0.3
    assert {"isolation_forest", "local_outlier_factor"} <= set(result["baselines"])
    assert len(result["calibration"]["predicted"]) >= 5
    assert (runs / "mlp" / "calibration.png").exists() and (
        runs / "mlp" / "test_precision_recall.png"
    ).exists()


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_chunked_scoring_equals_whole_file_scoring(runs: Path, transactions, tmp_path: Path) -> None:
    path, x = transactions
    predictor = FraudPredictor.from_release(runs / "autoencoder" / "release", "cpu")
    whole = score_file(predictor, path, tmp_path / "whole.csv", chunk_rows=100_000, show_progress=False)
    chunked = score_file(predictor, path, tmp_path / "chunked.csv", chunk_rows=7, show_progress=False)
    a, b = read_scores(tmp_path / "whole.csv"), read_scores(tmp_path / "chunked.csv")
    assert whole["rows_scored"] == chunked["rows_scored"] == 1000 and len(a) == len(b) == 1000
    assert [r["line"] for r in a] == [r["line"] for r in b] == [str(i) for i in range(2, 1002)]
    assert np.allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], rtol=1e-6)
    assert [r["flagged"] for r in a] == [r["flagged"] for r in b]
    direct = predictor.score(x[:, 1:])  # the release's own column order, whatever the file's
    assert np.allclose([float(r["score"]) for r in a], direct, rtol=1e-6)
    assert whole["ignored_columns"] == ["Time", "id", "Class"]


def test_bad_rows_are_reported_by_line_and_skipped(runs: Path, transactions, tmp_path: Path) -> None:
    path, _ = transactions
    lines = path.read_text().splitlines()
    fields = lines[3].split(",")
    fields[2] = "abc"
    lines[3] = ",".join(fields)  # line 4: a word for a number
    fields = lines[6].split(",")
    fields[5] = ""
    lines[6] = ",".join(fields)  # line 7: a missing value
    lines[9] = ",".join(lines[9].split(",")[:-3])  # line 10: too few fields
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    predictor = FraudPredictor.from_release(runs / "mlp" / "release", "cpu")
    summary = score_file(predictor, bad, tmp_path / "out.csv", chunk_rows=4, show_progress=False)
    assert summary["rows_scored"] == 997 and summary["skipped"] == 3
    reasons = summary["skipped_rows"]
    assert reasons[0].startswith("line 4: ") and "not a number: 'abc'" in reasons[0]
    assert reasons[1].startswith("line 7: ") and "is missing" in reasons[1]
    assert reasons[2] == "line 10: 29 fields, expected 32"
    scored_lines = {r["line"] for r in read_scores(tmp_path / "out.csv")}
    assert {"4", "7", "10"}.isdisjoint(scored_lines) and len(scored_lines) == 997
    assert (tmp_path / "out.csv.skipped.txt").read_text().count("\n") == 3


def test_parquet_scores_like_csv(runs: Path, transactions, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path, x = transactions
    pq_path = write_table(tmp_path / "tx.parquet", x, synthetic_transactions(10).features)
    predictor = FraudPredictor.from_release(runs / "mlp" / "release", "cpu")
    score_file(predictor, path, tmp_path / "a.csv", show_progress=False)
    score_file(predictor, pq_path, tmp_path / "b.csv", chunk_rows=99, show_progress=False)
    a, b = read_scores(tmp_path / "a.csv"), read_scores(tmp_path / "b.csv")
    assert [r["row"] for r in b] == [str(i) for i in range(1, 1001)]
    assert np.allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], rtol=1e-6)


def test_predict_command_and_its_errors(runs: Path, transactions, tmp_path: Path, capsys) -> None:
    path, _ = transactions
    release = str(runs / "mlp" / "release")
    out = tmp_path / "scores.csv"
    assert predict.main(["--release", release, "--input", str(path), "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_scored"] == 1000 and out.exists()
    assert (
        predict.main(["--release", release, "--input", str(path), "--output", str(out), "--threshold", "0"])
        == 0
    )
    assert all(r["flagged"] == "1" for r in read_scores(out))  # every P(fraud) >= 0
    no_amount = write_table(tmp_path / "no_amount.csv", np.zeros((3, 2)), ["V1", "V2"])
    with pytest.raises(UserError, match="lacks the feature column.*Amount"):
        predict.main(["--release", release, "--input", str(no_amount)])
    with pytest.raises(UserError, match="--input is required"):
        predict.main(["--release", release])
    with pytest.raises(UserError, match="no such folder"):
        predict.main(["--release", str(tmp_path / "nothing"), "--input", str(path)])
