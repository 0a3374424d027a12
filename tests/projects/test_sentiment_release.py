"""The sentiment analyzer's release path: run folder -> export (ONNX checked) -> predict and serve, with
the bad inputs a user or a client will send, and the exact word attributions of the n-gram models."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

pytest.importorskip("onnxruntime")
from fastapi.testclient import TestClient

from dlkit.errors import UserError
from dlkit.export import check_onnx_parity
from dlkit.text import tokenize
from projects.sentiment_analyzer import __main__ as cli
from projects.sentiment_analyzer import export, predict, train
from projects.sentiment_analyzer.data import synthetic_reviews
from projects.sentiment_analyzer.models import load_run
from projects.sentiment_analyzer.predict import SentimentPredictor, check_text, decode_bytes, language_note
from projects.sentiment_analyzer.serve import ServeConfig, build_app

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
    assert set(meta["metrics"]) == {"val", "test"} and str(release.parent) not in json.dumps(meta)
    predictor = SentimentPredictor.from_release(release, "cpu")
    texts = [*synthetic_reviews(40, seed=9).texts, "x", "Great!"]
    batches = [predictor.featurizer.encode(texts[:20]), predictor.featurizer.encode(texts[20:])]
    assert check_onnx_parity(predictor.model, release / "model.onnx", batches, atol=1e-4, rtol=1e-4) < 1e-4
    model, featurizer, _ = load_run(release.parent / "run")
    with torch.no_grad():
        expected = model(*featurizer.encode(texts)).softmax(1)
    assert torch.allclose(predictor.probabilities(texts), expected, atol=1e-6)


def test_evidence_is_the_exact_split_of_the_score_and_points_at_the_words(release: Path) -> None:
    predictor = SentimentPredictor.from_release(release, "cpu")
    text = "A WONDERFUL film, not boring at all... but the ending was awful."
    evidence = predictor.evidence(text, top=50)
    p = predictor.probabilities([text])[0].double()
    assert evidence["score"] == pytest.approx(float(p[1].log() - p[0].log()), abs=1e-3)  # z, exactly split
    with torch.no_grad():
        shares, bias = predictor.model.contributions(*predictor.featurizer.encode([text]))
    assert evidence["bias"] == pytest.approx(float(bias.detach()), abs=1e-4)
    assert float((shares.sum() + bias).detach()) == pytest.approx(evidence["score"], abs=1e-4)  # z
    shown = sorted([e["contribution"] for e in evidence["positive"] + evidence["negative"]])
    expected = sorted(round(float(c), 4) for c in shares[0] if abs(c) >= 0.005)  # all but the tiny ones
    assert shown == pytest.approx(expected, abs=1e-4)
    positive = [e["contribution"] for e in evidence["positive"]]
    negative = [e["contribution"] for e in evidence["negative"]]
    assert positive == sorted(positive, reverse=True) and min(positive) > 0  # the strongest first
    assert negative == sorted(negative) and max(negative) < 0
    for e in evidence["positive"] + evidence["negative"]:
        assert e["spans"], e  # every n-gram is found in the text
        for start, end in e["spans"]:
            assert tokenize(text[start:end]) == e["ngram"].split(" ")
    words = {e["ngram"]: e for side in ("positive", "negative") for e in evidence[side]}
    assert [text[s:e] for s, e in words["wonderful"]["spans"]] == ["WONDERFUL"]
    assert len(predictor.evidence(text, top=2)["positive"]) <= 2


def test_a_corrupt_vocabulary_or_a_missing_release_is_one_clear_error(release: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(release, broken)
    (broken / "vocab.json").write_text('{"kind": "ngram", "ngram": 3, "grams": ["<pad>", "good"]}')
    with pytest.raises(UserError, match="vocab.json is missing or corrupt"):
        SentimentPredictor.from_release(broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(UserError, match="model.safetensors"):
        SentimentPredictor.from_release(broken)


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
    code = cli.main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_reads_arguments_files_and_stdin_and_says_why(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run_predict(
        capsys, ["--release", str(release), "Superb, wonderful film", "Awful and boring"]
    )
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert code == 0 and [line.split()[0] for line in lines] == ["positive", "negative"]
    assert 50 <= float(lines[0].split()[1].rstrip("%")) <= 100
    assert 'pushed positive: "wonderful' in out or 'pushed positive: "superb' in out
    assert (
        predict.phrase("is superb .") == "is superb." and predict.phrase("( great ) film") == "(great) film"
    )
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("great film\n\n   \nterrible plot\n", encoding="utf-8")
    code, out, _ = run_predict(capsys, ["--release", str(release), "--file", str(reviews), "--json"])
    results = json.loads(out)
    assert code == 0 and [r["input"] for r in results] == [f"{reviews}:1", f"{reviews}:4"]
    assert all(set(r["probabilities"]) == {"neg", "pos"} for r in results)
    assert [r["sentiment"] for r in results] == ["positive", "negative"] and "evidence" in results[0]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"brilliant\nworst film ever\n")))
    code, out, _ = run_predict(capsys, ["--release", str(release), "--top-words", "0", "-"])
    assert code == 0 and len(out.splitlines()) == 2


def test_predict_explains_bad_input_and_carries_on(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("un film tr\xe8s beau, the best\n".encode("latin-1"))
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    french = "Ce film était vraiment magnifique, je le recommande à tous"
    argv = [
        "--release",
        str(release),
        "--max-chars",
        "100",
        "--top-words",
        "0",
        "",
        "   ",
        "great " * 100,
        french,
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
    code, _, err = run_predict(capsys, ["--release", str(tmp_path), "good"])
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "model.json" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-chars", "-5", "great"], "--max-chars must be >= 1, not -5"),
        (["--batch-size", "-1", "great"], "--batch-size must be >= 1, not -1"),
        (["--batch-size", "0", "great"], "--batch-size must be >= 1, not 0"),
        (["--top-words", "-2", "great"], "--top-words must be >= 0 and <= 50, not -2"),
        ([], "nothing to classify"),
    ],
)
def test_predict_refuses_flags_out_of_range_with_the_reason(
    release: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "--release", str(release), *argv])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err and out == ""


def test_expected_errors_are_one_line_without_a_traceback_in_a_real_process(tmp_path: Path) -> None:
    for argv in (
        ["predict", "--release", str(tmp_path / "none"), "great"],
        ["serve", "--release", str(tmp_path)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "projects.sentiment_analyzer", *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, (
            proc.stderr
        )


@pytest.fixture(scope="module")
def client(release: Path) -> TestClient:
    """The server with the default body limit (256 kB), 500 characters read per text, 4 texts a request."""
    with TestClient(
        build_app(ServeConfig(release=str(release), max_chars=500, max_texts=4, device="cpu"))
    ) as c:
        yield c


def test_serve_predicts_one_text_or_a_batch_with_the_evidence(client: TestClient) -> None:
    r = client.post("/predict", json={"text": "A wonderful, moving film"})
    assert r.status_code == 200
    body = r.json()
    assert body["label"] in ("neg", "pos") and body["probability"] == max(body["probabilities"].values())
    assert body["sentiment"] == {"neg": "negative", "pos": "positive"}[body["label"]]
    assert body["notes"] == [] and body["model"] in ("nbsvm", "baseline")
    assert {"positive", "negative", "bias", "score"} <= set(body["evidence"])
    r = client.post("/predict", json={"texts": ["great", "awful", "x " * 400]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    assert "only the first 500" in r.json()["predictions"][2]["notes"][0]
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text


def test_health_says_what_a_client_needs_and_not_where_files_lie(client: TestClient, release: Path) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"]["name"] in ("nbsvm", "baseline")
    assert health["model"]["classes"] == ["neg", "pos"] and health["model"]["explains_words"] is True
    text = json.dumps(health)
    assert str(release) not in text and str(release.parent) not in text and "/tmp" not in text


DIGITS_5000 = b'{"text": 1' + b"0" * 4999 + b"}"  # a 5,000-digit integer: int() refuses it in Python 3.11+
NESTED = b"[" * 100_000  # 100 kB, under the 256 kB limit: json.loads would recurse until RecursionError


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"content": b"great film", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"content": b'{"text": "great"}'}, 415, "(none)"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty"),
        ({"content": b'{"text": "\xff"}', "headers": {"content-type": "application/json"}}, 400, "not UTF-8"),
        ({"content": DIGITS_5000, "headers": {"content-type": "application/json"}}, 400, "cannot be read"),
        ({"content": NESTED, "headers": {"content-type": "application/json"}}, 400, "nests deeper"),
        ({"json": ["great"]}, 422, '"text"'),
        ({"json": {"review": "great"}}, 422, '"text"'),
        ({"json": {"text": "a", "texts": ["b"]}}, 422, "either"),
        ({"json": {"text": 42}}, 422, "must be a string"),
        ({"json": {"text": ""}}, 422, "empty"),
        ({"json": {"text": " \n "}}, 422, "only whitespace"),
        ({"json": {"texts": []}}, 422, "non-empty list"),
        ({"json": {"texts": ["a", "b", "c", "d", "e"]}}, 422, "at most 4"),
        ({"json": {"texts": ["fine", "  "]}}, 422, "texts[1]"),
        ({"json": {"text": "long " * 60_000}}, 413, "over the limit"),
    ],
)
def test_serve_refuses_bad_requests_with_a_reason(
    client: TestClient, kwargs: dict, status: int, reason: str
) -> None:
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert reason in r.json()["detail"] and r.json()["error"]
    assert client.post("/predict", json={"text": "still fine"}).status_code == 200
