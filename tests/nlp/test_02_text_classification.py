"""Lesson nlp/02 (text classification) in quick mode, and its from-scratch parts against PyTorch.

Quick mode takes a stratified 2,000 training (200 held out) and 1,000 test reviews of IMDB when it is
on disk; with no dataset it uses SYNTHETIC reviews (dlkit.data.synthetic_reviews) and says so. Either
way every model must learn: the lesson checks its accuracies against ranges above chance.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, run_lesson
from torch.nn.utils.rnn import pad_sequence

from dlkit.data import _NEGATIVE, _POSITIVE, synthetic_reviews
from dlkit.lesson import outcome_problems
from dlkit.text import Vocab, pad_batch, tokenize

LESSON = "nlp/02_text_classification.py"
OUTCOMES = {
    "tokenizer_matches_dlkit", "vocab_matches_dlkit", "ids_round_trip", "test_unk_rate",
    "padding_matches_pad_sequence", "bucketed_padding_ratio", "baseline_acc", "fasttext_acc", "cnn_acc",
    "glove_coverage",
}  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp02"))


def test_says_which_data(result):
    assert set(result["data"]) == {"reviews", "glove"}
    assert "IMDB" in result["data"]["reviews"] or "SYNTHETIC" in result["data"]["reviews"]


def test_records_what_it_teaches_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == OUTCOMES  # seconds are printed, not recorded
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    assert all(result["outcomes"][f"{m}_acc"]["chance"] == 0.5 for m in ("baseline", "fasttext", "cnn"))
    assert "test accuracy" in result["stdout"] and " s)" in result["stdout"]
    assert {"training_curves.png", "confusion_matrix.png"} <= {Path(f).name for f in result["figures"]}


@pytest.mark.slow
def test_runs_with_no_dataset_on_synthetic_reviews(tmp_path):
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "SYNTHETIC" in data["data"]["reviews"]
    assert "SYNTHETIC reviews" in data["stdout"]
    assert set(data["outcomes"]) == OUTCOMES and all(o["passed"] for o in data["outcomes"].values())


def test_synthetic_reviews_are_balanced_varied_and_repeatable():
    data = synthetic_reviews(100, seed=3)
    assert len(data) == 100 and data.labels.sum() == 50 and data.classes == ["neg", "pos"]
    lengths = {len(text.split()) for text in data.texts}
    assert min(lengths) >= 13 and max(lengths) <= 63 and len(lengths) > 10  # 10-60 filler words + 3 cues
    positive, negative = (set(words.split()) for words in (_POSITIVE, _NEGATIVE))
    for text, label in zip(data.texts, data.labels.tolist(), strict=True):
        cues = [w for w in text.split() if w in positive | negative]
        assert len(cues) == 3 and all((w in positive) == bool(label) for w in cues)
    assert synthetic_reviews(100, seed=3).texts == data.texts != synthetic_reviews(100, seed=4).texts


# --- The lesson's own functions, without running it ---------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


TEXTS = [
    "I didn't like it.<br /><br />NOT AT ALL: 2/10 &amp; boring!!",
    "Don\u2019t `miss` it -- 8.5 stars, 1,000 laughs; café au lait?",
    "",
    "The end. The END!",
]


def test_tokenizer_equals_dlkit(lesson):
    for text in TEXTS:
        assert lesson.my_tokenize(text) == tokenize(text)
    assert lesson.my_tokenize(TEXTS[0])[:4] == ["i", "didn't", "like", "it"]
    assert "<" not in lesson.my_tokenize(TEXTS[0]) and "&" in lesson.my_tokenize(TEXTS[0])


def test_vocab_equals_dlkit_and_round_trips(lesson):
    token_lists = [tokenize(t) for t in TEXTS]
    for min_freq in (1, 2):
        itos = lesson.build_vocab(token_lists, min_freq)
        assert itos == Vocab.build(token_lists, min_freq=min_freq).itos
    itos = lesson.build_vocab(token_lists, 2)
    stoi = {t: i for i, t in enumerate(itos)}
    assert itos[:2] == ["<pad>", "<unk>"] and itos[2] == "!"  # the most frequent first
    ids = [stoi.get(t, lesson.UNK_ID) for t in token_lists[3]]
    assert [itos[i] for i in ids] == [t if t in stoi else "<unk>" for t in token_lists[3]]
    assert lesson.UNK_ID in [stoi.get(t, lesson.UNK_ID) for t in token_lists[1]]


def test_collate_equals_pad_sequence_and_dlkit(lesson):
    seqs = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10, 11, 12, 13])]
    x, y = lesson.collate([(s, i % 2) for i, s in enumerate(seqs)])
    assert x.shape == (3, 5) and torch.equal(x, pad_sequence(seqs, batch_first=True, padding_value=0))
    x_dlkit, lengths = pad_batch([s.tolist() for s in seqs])
    assert torch.equal(x, x_dlkit) and lengths.tolist() == [3, 1, 5]
    assert y.tolist() == [0, 1, 0] and y.dtype == torch.long


def test_bucket_sampler_covers_every_index_once_with_less_padding(lesson):
    torch.manual_seed(0)
    lengths = torch.randint(1, 500, (1_000,)).tolist()
    sampler = lesson.BucketBatchSampler(lengths, batch_size=16, shuffle=True, pool=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(1_000 / 16)
    assert sorted(i for b in batches for i in b) == list(range(1_000))
    random_batches = [b.tolist() for b in torch.randperm(1_000).split(16)]
    assert lesson.padding_fraction(lengths, batches) < 0.1 < lesson.padding_fraction(lengths, random_batches)
    assert list(sampler) != batches  # a new order each epoch
    in_order = list(lesson.BucketBatchSampler(lengths, 16, shuffle=False, pool=10))
    assert in_order == list(lesson.BucketBatchSampler(lengths, 16, shuffle=False, pool=10))
    assert lesson.padding_fraction([2, 4], [[0, 1]]) == pytest.approx(0.25)


def test_count_matrix(lesson):
    seqs = [torch.tensor([2, 3, 3, 0]), torch.tensor([4]), torch.tensor([3, 2, 1])]
    dense = torch.zeros(3, 6)
    for i, s in enumerate(seqs):
        dense[i] += torch.bincount(s, minlength=6)
    assert torch.equal(torch.from_numpy(lesson.count_matrix(seqs, 6).toarray()), dense)


def test_fasttext_is_a_mean_of_embeddings_without_padding(lesson):
    torch.manual_seed(0)
    model = lesson.FastText(vocab_size=50, embed_dim=8, num_classes=2).double()
    x = torch.tensor([[4, 9, 9, 0, 0], [1, 2, 3, 4, 5], [7, 0, 0, 0, 0]])  # (B, T), 0 = padding
    mask = (x != 0).unsqueeze(-1).double()  # (B, T, 1)
    mean = (model.embedding.weight[x] * mask).sum(1) / mask.sum(1)  # (B, D)
    expected = mean @ model.fc.weight.T + model.fc.bias  # (B, C)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    # the same bags as a flat id list with offsets, fastText's own input format
    flat, offsets = torch.tensor([4, 9, 9, 1, 2, 3, 4, 5, 7]), torch.tensor([0, 3, 8])
    torch.testing.assert_close(model.embedding(flat, offsets), mean, rtol=0, atol=1e-6)


def test_cnn_is_max_over_time_of_relu_convolutions(lesson):
    torch.manual_seed(0)
    model = lesson.TextCNN(vocab_size=30, embed_dim=6, num_filters=4, num_classes=2).double().eval()
    for T in (2, 5, 37):  # shorter than the widest filter too: padded up to it
        assert model(torch.randint(1, 30, (3, T))).shape == (3, 2)
    x = torch.randint(1, 30, (3, 37))
    e = model.embedding(x).transpose(1, 2)  # (B, D, T)
    pooled = [F.max_pool1d(F.relu(conv(e)), 37 - conv.kernel_size[0] + 1).squeeze(2) for conv in model.convs]
    torch.testing.assert_close(
        model(x), model.fc(torch.cat(pooled, 1)), rtol=0, atol=1e-6
    )  # eval: no dropout
    assert torch.equal(model.embedding.weight[0], torch.zeros(6, dtype=torch.float64))  # padding_idx
