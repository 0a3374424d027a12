"""The sentiment analyzer's training side: features, models, exact attributions, splits, batches,
quick training runs (offline), evaluate, and the flags that must be refused."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, require_dataset

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.metrics import calibration_bins
from dlkit.text import tokenize
from projects.sentiment_analyzer import __main__ as cli
from projects.sentiment_analyzer import data as data_module
from projects.sentiment_analyzer import evaluate, train
from projects.sentiment_analyzer.data import length_batches, load_splits, synthetic_reviews, training_batches
from projects.sentiment_analyzer.evaluate import binary_metrics
from projects.sentiment_analyzer.features import (
    NgramFeaturizer,
    NgramTable,
    flat_batch,
    nb_ratios,
    ngram_spans,
    ngrams,
    token_spans,
)
from projects.sentiment_analyzer.models import NBLinear, build_model, load_run
from projects.sentiment_analyzer.train import tfidf_logistic_from_sklearn

TEXTS = ["A great film, great cast!", "Not good. Awful plot.", "The plot was great but not the cast."]


def test_ngrams_are_words_then_pairs_then_triples() -> None:
    assert ngrams(["not", "a", "good"], 3) == ["not", "a", "good", "not a", "a good", "not a good"]
    assert ngrams(["fine"], 3) == ["fine"] and ngrams([], 2) == []


def test_ngram_table_keeps_frequent_ngrams_and_round_trips_through_json() -> None:
    table = NgramTable.build(TEXTS, ngram=2, min_freq=2)
    assert table.grams[0] == "<pad>" and "great" in table.stoi and "plot" in table.stoi
    assert "awful" not in table.stoi  # in one text only
    ids = table.encode("great great plot, never seen")
    assert ids == sorted(set(ids)) and 0 not in ids  # distinct, sorted, no padding
    again = NgramTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.grams == table.grams and again.ngram == 2
    with pytest.raises(ValueError, match="not an n-gram table"):
        NgramTable.from_dict({"kind": "word", "itos": []})


def test_token_spans_point_at_the_words_in_the_original_text() -> None:
    text = "It's <br />GREAT &amp; Not   boring \U0001f600 at ALL!"
    tokens, spans = tokenize(text), token_spans(text)
    assert len(spans) == len(tokens)
    for token, span in zip(tokens, spans, strict=True):
        assert span is not None and text[span[0] : span[1]].lower() == token
    assert [text[s:e] for s, e in ngram_spans(tokens, spans, "not boring")] == ["Not   boring"]
    assert ngram_spans(tokens, spans, "great boring") == []


def test_nb_ratios_match_the_formula_in_float64() -> None:
    docs, labels, size = [[1, 2], [2, 3], [1], [3, 4]], [1, 1, 0, 0], 5
    r = nb_ratios(docs, labels, size, alpha=1.0)
    p = [1.0 + sum(f in d for d, y in zip(docs, labels, strict=True) if y == 1) for f in range(size)]
    q = [1.0 + sum(f in d for d, y in zip(docs, labels, strict=True) if y == 0) for f in range(size)]
    expected = [math.log((p[f] / sum(p)) / (q[f] / sum(q))) for f in range(size)]
    assert torch.allclose(r.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_nblinear_flat_padded_and_contribution_paths_agree_with_the_formula() -> None:
    torch.manual_seed(0)
    model = NBLinear(10).double()
    model.weight.data.normal_()
    model.bias.data.fill_(0.3)
    model.set_ratios(torch.randn(10, dtype=torch.float64))
    lists = [[1, 4, 7], [2], [3, 5, 6, 9]]
    padded = torch.tensor([[1, 4, 7, 0], [2, 0, 0, 0], [3, 5, 6, 9]])
    w, r = model.weight.detach(), model.ratios
    z_ref = torch.stack([((w[lst] + 0.4) * r[lst]).sum() / 10 + 0.3 for lst in lists])
    flat = model(*flat_batch(lists)).detach()  # training's input: (ids, offsets)
    logits = model(padded).detach()  # the release's input
    for out in (flat, logits):
        assert torch.allclose(out[:, 1] - out[:, 0], z_ref, atol=1e-12)
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z_ref), atol=1e-12)
    shares, bias = model.contributions(padded)
    assert torch.equal(shares[padded == 0], torch.zeros(int((padded == 0).sum()), dtype=torch.float64))
    assert torch.allclose(shares.sum(1).detach() + bias.detach(), z_ref, atol=1e-12)  # exact, not approximate


def test_tfidf_logistic_gives_sklearns_probabilities_and_exact_shares() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    data = synthetic_reviews(300, seed=3)
    vectorizer = TfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, 2),
        min_df=2,
        sublinear_tf=True,
    )
    classifier = LogisticRegression(C=10.0, max_iter=1000).fit(
        vectorizer.fit_transform(data.texts), data.labels
    )
    model, featurizer = tfidf_logistic_from_sklearn(vectorizer, classifier)
    texts = [*synthetic_reviews(50, seed=4).texts, "zzz unknown words only", "great great great film"]
    expected = classifier.predict_proba(vectorizer.transform(texts))[:, 1]
    inputs = [t.double() if t.is_floating_point() else t for t in featurizer.encode(texts)]
    model = model.double()
    assert torch.allclose(model(*inputs).softmax(1)[:, 1], torch.from_numpy(expected), atol=1e-6)
    shares, intercept = model.contributions(*inputs)
    z = torch.from_numpy(classifier.decision_function(vectorizer.transform(texts)))
    assert torch.allclose(shares.sum(1) + intercept, z, atol=1e-6)


def test_binary_metrics() -> None:
    z, y = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 1])
    m = binary_metrics(z, y, bins=10)
    assert m["acc"] == 0.5 and m["confusion"] == [[1, 1], [1, 1]] and m["f1"] == pytest.approx(0.5)
    confidence = torch.sigmoid(torch.tensor([2.0, 1.0, 0.5, 3.0])).double()  # of the predicted class
    correct = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert m["ece"] == pytest.approx(calibration_bins(confidence, correct, bins=10)["ece"])


def test_the_validation_split_is_held_out_of_training_and_the_same_each_time() -> None:
    splits = load_splits("synthetic", val_fraction=0.2, train_subset=500, test_subset=100, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (400, 100, 100)
    everything = synthetic_reviews(500, seed=3).texts
    assert sorted(splits.train.texts + splits.val.texts) == sorted(everything)  # a partition of it
    again = load_splits("synthetic", val_fraction=0.2, train_subset=500, test_subset=100, seed=3)
    assert again.val.texts == splits.val.texts and "validation (held out from train)" in splits.describe()
    assert 30 <= int(splits.val.labels.sum()) <= 70  # both classes


def test_length_batches_cover_every_index_once() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8]
    for shuffle in (False, True):
        batches = length_batches(lengths, 3, shuffle=shuffle)
        assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in sum(length_batches(lengths, 3, shuffle=False), [])] == sorted(lengths)


@pytest.mark.parametrize("by_length", [False, True])
def test_training_batches_depend_on_seed_and_epoch_and_split_evenly_over_processes(
    by_length: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    id_lists = [[i + 1] * (1 + i % 7) for i in range(50)]
    labels = torch.arange(50)
    one = training_batches(
        id_lists, labels, 8, lambda lists: (flat_batch(lists)[0],), seed=1, by_length=by_length
    )
    epoch0 = [y.tolist() for _, y in one(0)]
    assert sorted(sum(epoch0, [])) == list(range(50)) and len(one(0)) == 7
    assert [y.tolist() for _, y in one(0)] == epoch0 and [y.tolist() for _, y in one(1)] != epoch0
    shards = []
    for rank in (0, 1):  # what each of two torchrun processes gets
        monkeypatch.setattr(data_module, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(data_module, "get_world_size", lambda: 2)
        shards.append([y.tolist() for _, y in training_batches(id_lists, labels, 8, flat_batch, seed=1,
                                                               by_length=by_length)(0)])  # fmt: skip
    for whole, a, b in zip(epoch0, *shards, strict=True):  # each process: every other review of the batch
        even = whole[: len(whole) - len(whole) % 2]  # at most one review dropped, so both hold as many
        assert a == even[0::2] and b == even[1::2]


@pytest.mark.slow  # 8 to 35 s a model on 2 shared cores
@pytest.mark.parametrize("model", ["nbsvm", "baseline"])
def test_quick_training_selects_on_validation_and_scores_the_test_set_once(
    model: str, tmp_path: Path
) -> None:
    info = train.main(["--quick", "--model", model, "--runs-dir", str(tmp_path), "--run-name", "run"])
    run_dir = tmp_path / "run"
    val, test = info["metrics"]["val"], info["metrics"]["test"]
    assert test["acc"] >= 0.75 and test["f1"] >= 0.7 and val["acc"] >= 0.7
    assert info["num_reviews"] == {"train": 900, "val": 100, "test": 400}
    assert info["dataset"].startswith("synthetic reviews") and "not real" in info["dataset"]
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "vocab.json", "model_info.json"):
        assert (run_dir / name).is_file(), name
    for name in ("val_calibration.png", "test_calibration.png", "test_confusion.png"):
        assert (run_dir / name).is_file(), name
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert "val_loss" in header and "test" not in header  # the loop never saw the test set
    for split in ("test", "val"):  # evaluate goes through the release's input path
        report = evaluate.main(["--run-dir", str(run_dir), "--split", split])
        assert report["acc"] == pytest.approx(info["metrics"][split]["acc"], abs=1e-9)
        assert report["num_reviews"] == info["num_reviews"][split]
    assert (run_dir / "evaluation_val.json").is_file()


def test_quick_nbsvm_keeps_the_epoch_with_the_lowest_validation_loss(tmp_path: Path) -> None:
    argv = ["--quick", "--runs-dir", str(tmp_path), "--run-name", "run", "--num-epochs", "6", "--lr", "1.0"]
    info = train.main([*argv, "--patience", "2"])  # a large lr: validation loss turns up early
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    names = lines[0].split(",")
    rows = [dict(zip(names, map(float, line.split(",")), strict=True)) for line in lines[1:]]
    best = min(rows, key=lambda r: r["val_loss"])
    model, featurizer, _ = load_run(tmp_path / "run")
    assert info["metrics"]["val"]["log_loss"] == pytest.approx(best["val_loss"], abs=1e-5)
    assert isinstance(featurizer, NgramFeaturizer) and not model.training


def run_cli(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m projects.sentiment_analyzer ARGV`` in a fresh process, runs under ``tmp_path``."""
    full_env = {**os.environ, "DLKIT_RUNS": str(tmp_path / "runs"), **env}
    return subprocess.run(
        [sys.executable, "-m", "projects.sentiment_analyzer", *argv],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def no_data(tmp_path: Path) -> dict[str, str]:
    """A machine with no dataset anywhere and no network access needed."""
    return {
        "DLKIT_DATA": str(tmp_path / "none"),
        "DLKIT_CACHE": str(tmp_path / "cache"),
        "DLKIT_SYSTEM_DATA": "0",
    }


@pytest.mark.slow
def test_quick_mode_runs_offline_without_any_dataset_and_says_what_it_used(tmp_path: Path) -> None:
    proc = run_cli(["train", "--quick"], tmp_path, **no_data(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data: synthetic reviews (made up from word lists, not real reviews)" in proc.stdout
    assert (tmp_path / "runs" / "sentiment_analyzer" / "synthetic-nbsvm" / "model_info.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "bert"], "--model must be one of nbsvm, baseline, minilm"),
        (["--val-fraction", "0.9"], "--val-fraction must be > 0 and <= 0.5, not 0.9"),
        (["--batch-size", "0"], "--batch-size must be >= 1, not 0"),
        (["--patience", "-1"], "--patience must be >= 1, not -1"),
        (["--max-len", "1024", "--model", "minilm"], "--max-len must be >= 8 and <= 512, not 1024"),
    ],
)
def test_bad_training_flags_are_refused_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--quick", "--runs-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_evaluate_without_a_run_folder_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["evaluate", "--run-dir", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "train a model first" in err


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    base = ["--quick", "--runs-dir", str(tmp_path), "--patience", "10"]
    whole = train.main([*base, "--run-name", "whole", "--num-epochs", "6"])
    train.main([*base, "--run-name", "cut", "--num-epochs", "3"])
    resumed = train.main([*base, "--run-name", "cut", "--num-epochs", "6", "--resume"])
    assert resumed["metrics"]["test"]["log_loss"] == pytest.approx(
        whole["metrics"]["test"]["log_loss"], abs=1e-6
    )
    a, _, _ = load_run(tmp_path / "whole")
    b, _, _ = load_run(tmp_path / "cut")
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


@pytest.mark.slow
def test_nbsvm_on_an_imdb_subset(tmp_path: Path) -> None:
    require_dataset("imdb")
    argv = [
        "--train-subset",
        "4000",
        "--test-subset",
        "2000",
        "--runs-dir",
        str(tmp_path),
        "--run-name",
        "imdb",
    ]
    info = train.main(argv)
    assert info["metrics"]["test"]["acc"] >= 0.84 and info["dataset"].startswith("IMDB")
    assert info["metrics"]["val"]["acc"] >= 0.8 and info["num_reviews"]["val"] == 400


@pytest.mark.slow
def test_minilm_fine_tunes_from_a_float16_copy_with_float32_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One short epoch on a few synthetic reviews, from a half-precision copy of the encoder (as a GPU run
    may carry it): training must use float32 master weights, and the run must load back and export."""
    pytest.importorskip("transformers")
    from dlkit.pretrained_text import TextModelNotAvailableError, load_text_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("DLKIT_TEXT_ENCODER", raising=False)
    try:
        encoder = load_text_encoder(download=False)
    except TextModelNotAvailableError as e:
        pytest.skip(str(e))
    half = tmp_path / "minilm-fp16"
    encoder.model.half().save_pretrained(half)
    encoder.tokenizer.save_pretrained(half)
    monkeypatch.setenv("DLKIT_TEXT_ENCODER", str(half))
    argv = [
        "--quick",
        "--model",
        "minilm",
        "--train-subset",
        "96",
        "--test-subset",
        "48",
        "--num-epochs",
        "1",
    ]
    argv += ["--max-len", "48", "--batch-size", "16", "--lr", "1e-4", "--device", "cpu"]
    argv += ["--runs-dir", str(tmp_path), "--run-name", "minilm"]
    info = train.main(argv)
    assert info["architecture"]["kwargs"]["encoder_config"]["hidden_size"] == 384
    model, featurizer, _ = load_run(tmp_path / "minilm")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert featurizer.max_len == 48 and (tmp_path / "minilm" / "tokenizer").is_dir()
    rebuilt = build_model("minilm", **info["architecture"]["kwargs"])
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())

    from projects.sentiment_analyzer import export
    from projects.sentiment_analyzer.predict import SentimentPredictor

    run_dir = str(tmp_path / "minilm")
    assert export.main(["--run-dir", run_dir, "--atol", "1e-3", "--parity-examples", "32"]) == 0
    predictor = SentimentPredictor.from_release(tmp_path / "minilm" / "release", "cpu")
    long_review, short_review = "a wonderful film " * 40, "Awful."
    answers = predictor.predict([long_review, short_review])
    assert "only the first 48" in answers[0]["notes"][0] and answers[1]["notes"] == []
    assert "no exact share" in answers[0]["evidence"]["explanation"]  # no attribution is faked
    assert predictor.describe()["explains_words"] is False
    with torch.no_grad():
        expected = model(*featurizer.encode([long_review, short_review])).softmax(1)
    assert torch.allclose(predictor.probabilities([long_review, short_review]), expected, atol=1e-5)


@pytest.mark.slow  # two processes import torch
def test_the_ngram_table_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Ties in frequency keep their order of first appearance, never a set's order (which depends on
    PYTHONHASHSEED): torchrun processes and a resumed run must number the n-grams alike."""
    code = (
        "import json, sys; from projects.sentiment_analyzer.data import synthetic_reviews;"
        "from projects.sentiment_analyzer.features import NgramTable;"
        "print(json.dumps(NgramTable.build(synthetic_reviews(200).texts, min_freq=1, max_size=500).grams))"
    )
    tables = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout  # fmt: skip
        for seed in ("1", "2")
    ]
    assert tables[0] == tables[1] and len(json.loads(tables[0])) == 500
