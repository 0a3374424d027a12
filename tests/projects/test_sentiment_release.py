"""The sentiment analyzer's release path: run folder -> export (ONNX checked) -> predict and serve,
with the bad inputs a user or a client will send."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

pytest.importorskip("onnxruntime")
from fastapi.testclient import TestClient

from dlkit.export import ReleaseError, check_onnx_parity
from projects.sentiment_analyzer import export, predict, train
from projects.sentiment_analyzer.data import synthetic_reviews
from projects.sentiment_analyzer.predict import Predictor, check_text, decode_bytes, language_note
from projects.sentiment_analyzer.serve import build_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["nbsvm", "baseline"])
def release(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick run on synthetic reviews, exported (with its ONNX graph checked)."""
    root = tmp_path_factory.mktemp(request.param)
    train.main(["--quick", "--model", request.param, "--runs-dir", str(root), "--run-name", "run"])
    assert export.main(["--run-dir", str(root / "run"), "--out", str(root / "release")]) == 0
    return root / "release"


def test_release_holds_weights_vocabulary_and_a_checked_onnx_graph(release: Path) -> None:
    meta = json.loads((release / "model.json").read_text())
    assert {p.name for p in release.iterdir()} == {
        "model.json",
        "model.safetensors",
        "model.onnx",
        "vocab.json",
    }
    assert meta["parity"]["onnx_max_abs_diff"] < 1e-4 and "vocab.json" in meta["featurizer_files"]
    predictor = Predictor.from_release(release)
    texts = [*synthetic_reviews(40, seed=9).texts, "x", "Great!"]
    batches = [predictor.featurizer.encode(texts[:20]), predictor.featurizer.encode(texts[20:])]
    assert check_onnx_parity(predictor.model, release / "model.onnx", batches, atol=1e-4, rtol=1e-4) < 1e-4
    model, featurizer, _ = train.load_trained(release.parent / "run")
    with torch.no_grad():
        expected = model(*featurizer.encode(texts)).softmax(1)
    assert torch.allclose(predictor.probabilities(texts), expected, atol=1e-6)


def test_a_corrupt_vocabulary_is_reported(release: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(release, broken)
    (broken / "vocab.json").write_text('{"kind": "ngram", "ngram": 3, "grams": ["<pad>", "good"]}')
    with pytest.raises(ReleaseError, match="vocab.json is missing or corrupt"):
        Predictor.from_release(broken)


def test_input_checks() -> None:
    for text, reason in (("", "empty"), ("  \n\t ", "only whitespace"), (None, "must be a string")):
        with pytest.raises(predict.TextRejected, match=reason):
            check_text(text)
    text, notes = check_text("good " * 10_000, max_chars=1000)
    assert len(text) == 1000 and "only the first 1,000" in notes[0]
    assert decode_bytes("café".encode()) == ("café", [])
    assert decode_bytes(b"\xef\xbb\xbfhi") == ("hi", [])  # a BOM is dropped
    text, notes = decode_bytes(b"a good film \xff\xfe really")
    assert "\ufffd" in text and "not valid UTF-8" in notes[0]
    with pytest.raises(predict.TextRejected, match="binary"):
        decode_bytes(b"PK\x03\x04\x00\x00")
    assert language_note("This movie was great and I loved it") is None
    assert "English" in (language_note("Ce film était vraiment magnifique, je le recommande") or "")
    assert "English" in (language_note("这部电影很好看") or "")
    assert "no words" in (language_note("!!! 10/10 :-)") or "")


def run_predict(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = predict.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_reads_arguments_files_and_stdin(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run_predict(
        capsys, ["--release", str(release), "Superb, wonderful film", "Awful and boring"]
    )
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].split()[0] in ("neg", "pos")
    assert 0.5 <= float(lines[0].split()[1]) <= 1.0
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\n\n   \nterrible plot\n", encoding="utf-8")
    code, out, _ = run_predict(capsys, ["--release", str(release), "--file", str(reviews), "--json"])
    results = json.loads(out)
    assert code == 0 and [r["input"] for r in results] == [f"{reviews}:1", f"{reviews}:4"]
    assert all(set(r["probabilities"]) == {"neg", "pos"} for r in results)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"brilliant\nworst film ever\n")))
    code, out, _ = run_predict(capsys, ["--release", str(release), "-"])
    assert code == 0 and len(out.splitlines()) == 2


def test_predict_explains_bad_input_and_carries_on(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("un film tr\xe8s beau, the best\n".encode("latin-1"))
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    argv = [
        "--release",
        str(release),
        "--max-chars",
        "100",
        "",
        "   ",
        "great " * 100,
        "Ce film était vraiment magnifique, je le recommande à tous",
    ]
    code, out, err = run_predict(capsys, [*argv, "--file", str(latin1)])
    assert code == 1 and len(out.splitlines()) == 3  # the long, the French and the Latin-1 texts
    assert "argument 1: not classified: the text is empty" in err
    assert "argument 2: not classified: the text is only whitespace" in err
    assert "only the first 100" in err and "does not look English" in err and "not valid UTF-8" in err
    code, out, err = run_predict(capsys, ["--release", str(release), "--file", str(binary)])
    assert code == 1 and "binary data" in err and out == ""
    code, _, err = run_predict(capsys, ["--release", str(release), "--file", str(tmp_path / "missing.txt")])
    assert code == 1 and "cannot read the file" in err
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--release", str(release)])
    assert exit_info.value.code == 2 and "nothing to classify" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--release", str(tmp_path), "good"])
    assert exit_info.value.code == 2 and "model.json not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client(release: Path) -> TestClient:
    with TestClient(build_app(release, max_body_bytes=4096, max_chars=500, max_texts=4)) as c:
        yield c


def test_serve_predicts_one_text_or_a_batch(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "A wonderful, moving film"})
    assert r.status_code == 200
    body = r.json()
    assert body["label"] in ("neg", "pos") and body["probability"] == max(body["probabilities"].values())
    assert body["notes"] == [] and body["model"]["architecture"] in ("nbsvm", "baseline")
    r = client.post("/predict", json={"texts": ["great", "awful", "x " * 400]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    assert "only the first 500" in r.json()["predictions"][2]["notes"][0]
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"content": b"great film", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"content": b'{"text": "great"}'}, 415, "(none)"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
        ({"content": b'{"text": "\xff"}', "headers": {"content-type": "application/json"}}, 400, "not UTF-8"),
        ({"json": ["great"]}, 422, '"text"'),
        ({"json": {"review": "great"}}, 422, '"text"'),
        ({"json": {"text": "a", "texts": ["b"]}}, 422, "either"),
        ({"json": {"text": 42}}, 422, "must be a string"),
        ({"json": {"text": ""}}, 422, "empty"),
        ({"json": {"text": " \n "}}, 422, "only whitespace"),
        ({"json": {"texts": []}}, 422, "non-empty list"),
        ({"json": {"texts": ["a", "b", "c", "d", "e"]}}, 422, "at most 4"),
        ({"json": {"texts": ["fine", "  "]}}, 422, "texts[1]"),
        ({"json": {"text": "long " * 2000}}, 413, "over the limit"),
    ],
)
def test_serve_refuses_bad_requests_with_a_reason(
    client: TestClient, kwargs: dict, status: int, reason: str
) -> None:
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"] and r.json()["error"]
    assert client.post("/predict", json={"text": "still fine"}).status_code == 200
