"""The sentiment analyzer's training side: features, models, metrics, and quick training runs."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, require_dataset

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from dlkit.metrics import calibration_bins
from projects.sentiment_analyzer import evaluate, train
from projects.sentiment_analyzer.data import synthetic_reviews
from projects.sentiment_analyzer.evaluate import binary_metrics
from projects.sentiment_analyzer.features import NgramTable, nb_ratios, ngrams
from projects.sentiment_analyzer.models import NBLinear, build_model
from projects.sentiment_analyzer.train import length_batches, tfidf_logistic_from_sklearn

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


def test_nb_ratios_match_the_formula_in_float64() -> None:
    docs, labels, size = [[1, 2], [2, 3], [1], [3, 4]], [1, 1, 0, 0], 5
    r = nb_ratios(docs, labels, size, alpha=1.0)
    p = [1.0 + sum(f in d for d, y in zip(docs, labels, strict=True) if y == 1) for f in range(size)]
    q = [1.0 + sum(f in d for d, y in zip(docs, labels, strict=True) if y == 0) for f in range(size)]
    expected = [math.log((p[f] / sum(p)) / (q[f] / sum(q))) for f in range(size)]
    assert torch.allclose(r.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_nblinear_flat_and_padded_paths_agree_with_the_formula() -> None:
    torch.manual_seed(0)
    model = NBLinear(10).double()
    model.weight.data.normal_()
    model.bias.data.fill_(0.3)
    model.set_ratios(torch.randn(10, dtype=torch.float64))
    lists = [[1, 4, 7], [2], [3, 5, 6, 9]]
    padded = torch.tensor([[1, 4, 7, 0], [2, 0, 0, 0], [3, 5, 6, 9]])
    ids = torch.tensor([i for lst in lists for i in lst])
    z_flat = model.score_flat(ids, torch.tensor([0, 3, 4]))
    logits = model(padded)  # (3, 2)
    w, r = model.weight.detach(), model.ratios
    z_ref = torch.stack([((w[lst] + 0.4) * r[lst]).sum() / 10 + 0.3 for lst in lists])
    assert torch.allclose(z_flat.detach(), z_ref, atol=1e-6)
    assert torch.allclose((logits[:, 1] - logits[:, 0]).detach(), z_ref, atol=1e-6)
    assert torch.allclose(logits.softmax(1)[:, 1].detach(), torch.sigmoid(z_ref), atol=1e-6)


def test_tfidf_logistic_gives_sklearns_probabilities() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from dlkit.text import tokenize

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
    got = model.double()(*(t.double() if t.is_floating_point() else t for t in featurizer.encode(texts)))
    assert torch.allclose(got.softmax(1)[:, 1], torch.from_numpy(expected), atol=1e-6)


def test_binary_metrics() -> None:
    z, y = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 1])
    m = binary_metrics(z, y, bins=10)
    assert m["acc"] == 0.5 and m["confusion"] == [[1, 1], [1, 1]] and m["f1"] == pytest.approx(0.5)
    confidence = torch.sigmoid(torch.tensor([2.0, 1.0, 0.5, 3.0])).double()  # of the predicted class
    correct = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert m["ece"] == pytest.approx(calibration_bins(confidence, correct, bins=10)["ece"])


def test_length_batches_cover_every_index_once() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8]
    for shuffle in (False, True):
        batches = length_batches(lengths, 3, shuffle=shuffle)
        assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in sum(length_batches(lengths, 3, shuffle=False), [])] == sorted(lengths)


@pytest.mark.parametrize("model", ["nbsvm", "baseline"])
def test_quick_training_learns_the_synthetic_reviews(model: str, tmp_path: Path) -> None:
    info = train.main(["--quick", "--model", model, "--runs-dir", str(tmp_path), "--run-name", "run"])
    run_dir = tmp_path / "run"
    assert info["metrics"]["acc"] >= 0.75 and info["metrics"]["f1"] >= 0.7
    for name in (
        "config.json",
        "metrics.csv",
        "calibration.png",
        "confusion.png",
        "loss.png",
        "checkpoint.pt",
        "vocab.json",
    ):
        assert (run_dir / name).is_file(), name
    report = evaluate.main(["--run-dir", str(run_dir)])  # the padded path predict uses
    assert report["acc"] == pytest.approx(info["metrics"]["acc"], abs=1e-9)
    assert 0 <= report["ece"] <= 1 and (run_dir / "evaluation.json").is_file()


def test_unknown_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown --model"):
        train.main(["--quick", "--model", "bert", "--runs-dir", str(tmp_path)])


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
    assert info["metrics"]["acc"] >= 0.84 and info["dataset"].startswith("IMDB")
    assert info["metrics"]["train_seconds"] < 60


@pytest.mark.slow
def test_minilm_fine_tunes_from_a_float16_copy_with_float32_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One short epoch on a few synthetic reviews, from a half-precision copy of the encoder (as a GPU run
    may carry it): training must use float32 master weights, and the run must load back."""
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
    assert info["model_kwargs"]["encoder_config"]["hidden_size"] == 384
    model, featurizer, _ = train.load_trained(tmp_path / "minilm")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert featurizer.max_len == 48 and (tmp_path / "minilm" / "tokenizer").is_dir()
    assert 0.0 <= info["metrics"]["acc"] <= 1.0
    rebuilt = build_model("minilm", **info["model_kwargs"])
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())

    from projects.sentiment_analyzer import export
    from projects.sentiment_analyzer.predict import Predictor

    assert export.main(["--run-dir", str(tmp_path / "minilm"), "--atol", "1e-3", "--parity-texts", "32"]) == 0
    predictor = Predictor.from_release(tmp_path / "minilm" / "release")
    long_review, short_review = "a wonderful film " * 40, "Awful."
    answers = predictor.predict([long_review, short_review])
    assert "only the first 48" in answers[0]["notes"][0] and answers[1]["notes"] == []
    with torch.no_grad():
        expected = model(*featurizer.encode([long_review, short_review])).softmax(1)
    assert torch.allclose(predictor.probabilities([long_review, short_review]), expected, atol=1e-5)
