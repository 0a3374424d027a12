"""The fraud detector's server: POST /score (one transaction or a batch, the same scores as the release),
4xx with a reason for missing or extra fields and wrong types, POST /score-file (a CSV: histogram,
threshold, top rows, skipped rows), /health without server paths."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from dlkit.tabular import synthetic_transactions, write_table
from projects.fraud_detector import export, train
from projects.fraud_detector.predict import FraudPredictor
from projects.fraud_detector.serve import ServeConfig, build_app

pytestmark = pytest.mark.slow  # a quick training run and a release first: 10-30 s on busy cores


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fraud_serve")
    train.main(["--quick", "--model", "mlp", "--runs-dir", str(root), "--run-name", "mlp", "--threads", "1"])
    assert export.main(["--run-dir", str(root / "mlp"), "--no-onnx"]) == 0
    return root / "mlp" / "release"


@pytest.fixture(scope="module")
def client(release: Path) -> Iterator[TestClient]:
    cfg = ServeConfig(release=str(release), device="cpu", max_rows=100, top_rows=5)
    with TestClient(build_app(cfg)) as c:
        yield c


@pytest.fixture(scope="module")
def rows() -> tuple[list[str], np.ndarray]:
    data = synthetic_transactions(200, 0.05, seed=21)
    return data.features[1:], data.x[:, 1:].numpy()


def transaction(features: list[str], row: np.ndarray) -> dict[str, float]:
    return {f: float(v) for f, v in zip(features, row, strict=True)}


def test_health_says_what_a_client_needs_and_no_paths(client: TestClient, release: Path) -> None:
    health = client.get("/health").json()
    model = health["model"]
    assert health["status"] == "ok" and model["name"] == "mlp"
    assert model["features"] == [f"V{i}" for i in range(1, 29)] + ["Amount"]
    assert model["score"]["kind"] == "probability" and 0 < model["threshold"] < 1
    assert str(release) not in json.dumps(health)


def test_one_transaction_and_a_batch_score_like_the_release(client, release, rows) -> None:
    features, x = rows
    expected = FraudPredictor.from_release(release, "cpu").score(x)
    one = client.post("/score", json=transaction(features, x[0])).json()
    assert one["score"] == pytest.approx(expected[0], rel=1e-6) and one["flagged"] == (
        one["score"] >= one["threshold"]
    )
    batch = client.post("/score", json={"transactions": [transaction(features, r) for r in x[:50]]}).json()
    assert [r["score"] for r in batch["results"]] == pytest.approx(expected[:50].tolist(), rel=1e-6)
    assert batch["flagged"] == sum(r["flagged"] for r in batch["results"])
    listed = client.post("/score", json=[transaction(features, r) for r in x[:3]]).json()
    assert [r["score"] for r in listed["results"]] == pytest.approx(expected[:3].tolist(), rel=1e-6)


def test_bad_transactions_get_422_with_the_reason(client, rows) -> None:
    features, x = rows
    good = transaction(features, x[0])

    def detail(body) -> str:
        response = client.post("/score", json=body)
        assert response.status_code == 422, response.text
        return response.json()["detail"]

    assert detail({k: v for k, v in good.items() if k not in ("V3", "Amount")}).startswith(
        "missing field(s) V3, Amount"
    )
    assert "unexpected field(s) Time" in detail({**good, "Time": 0.0})
    assert "field 'V2' must be a number, not '1.5' (str)" in detail({**good, "V2": "1.5"})
    assert "field 'V2' must be a number, not True (bool)" in detail({**good, "V2": True})
    assert "field 'Amount' must be a number, not None" in detail({**good, "Amount": None})
    assert "field 'V1' must be a number, not list" in detail({**good, "V1": [1]})
    assert detail({"transactions": [good, {**good, "V9": "x"}]}).startswith("transaction 1: field 'V9'")
    assert detail({"transactions": [good, 5]}).startswith("transaction 1: must be a JSON object")
    assert "no transaction" in detail({"transactions": []})
    assert "the limit is 100" in detail({"transactions": [good] * 101})
    assert "unexpected field(s) extra" in detail({"transactions": [good], "extra": 1})
    nan = client.post(
        "/score",
        content=json.dumps(good).replace(str(good["V4"]), "NaN"),
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422 and "finite" in nan.json()["detail"]


def test_other_bad_requests_are_4xx(client) -> None:
    assert client.post("/score", content="V1=3", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/score", content="{", headers={"content-type": "application/json"}).status_code == 400
    big = client.post(
        "/score", content=b"[" + b"1," * 160_000 + b"1]", headers={"content-type": "application/json"}
    )
    assert big.status_code == 413


def csv_bytes(tmp_path: Path, features: list[str], x: np.ndarray) -> bytes:
    path = write_table(tmp_path / "upload.csv", x, features)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[3], "abc", 1)  # line 6: not a number
    return ("\n".join(lines) + "\n").encode()


def test_a_csv_file_gets_histogram_threshold_top_rows_and_skipped_rows(
    client, release, rows, tmp_path
) -> None:
    features, x = rows
    body = csv_bytes(tmp_path, features, x)
    response = client.post("/score-file", files={"file": ("day.csv", body, "text/csv")})
    assert response.status_code == 200, response.text
    r = response.json()
    assert r["rows_scored"] == 199 and r["skipped"] == 1 and r["skipped_rows"][0].startswith("line 6: V")
    assert sum(r["histogram"]["counts"]) == 199 and not r["histogram"]["log_x"]
    scores = [t["score"] for t in r["top"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    expected = FraudPredictor.from_release(release, "cpu").score(x)
    assert scores[0] == pytest.approx(float(np.delete(expected, 4).max()), rel=1e-6)
    assert r["flagged"] == int((np.delete(expected, 4) >= r["threshold"]).sum())
    assert len(r["top"][0]["unusual"]) == 3 and r["top"][0]["line"] >= 2
    same = client.post("/score-file", content=body, headers={"content-type": "text/csv"}).json()
    assert same["rows_scored"] == 199


def test_a_file_without_the_models_columns_is_refused_with_the_reason(client, tmp_path) -> None:
    path = write_table(tmp_path / "wrong.csv", np.zeros((3, 2)), ["V1", "V2"])
    response = client.post("/score-file", files={"file": ("wrong.csv", path.read_bytes(), "text/csv")})
    assert (
        response.status_code == 422
        and "lacks 27 of the model's 29 feature columns: V3, V4," in response.json()["detail"]
    )
    assert client.post("/score-file", files={"file": ("e.csv", b"", "text/csv")}).status_code == 422
    assert client.post("/score-file", content=b"x", headers={"content-type": "image/png"}).status_code == 415


def test_a_json_body_sent_without_a_length_is_held_to_the_json_limit(client) -> None:
    chunks = iter([b"[", b"1," * 160_000, b"1]"])  # an iterator: sent chunked, no Content-Length
    response = client.post("/score", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "--max-body-kb" in response.json()["detail"]


def test_uploads_are_scored_a_few_at_a_time(release, rows, tmp_path, monkeypatch) -> None:
    """--files-at-once bounds the uploads in memory: the others wait until one is done."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from projects.fraud_detector import serve

    running, most = [0], [0]
    lock = threading.Lock()
    real = serve.file_report

    def slow_report(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return real(*args)

    monkeypatch.setattr(serve, "file_report", slow_report)
    features, x = rows
    body = write_table(tmp_path / "day.csv", x[:20], features).read_bytes()
    cfg = ServeConfig(release=str(release), device="cpu", files_at_once=2)
    with TestClient(build_app(cfg)) as c, ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    c.post("/score-file", content=body, headers={"content-type": "text/csv"}).status_code
                ),
                range(6),
            )
        )
    assert codes == [200] * 6 and most[0] == 2  # six uploads at once, never more than two scored together
