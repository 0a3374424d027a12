"""Lesson nlp/02 (text classification) in quick mode, and its from-scratch parts against PyTorch.

Quick mode takes a stratified 2,000 training (200 held out) and 1,000 test reviews of IMDB when it is
on disk; a second run finds no dataset and must use the 200 Pang & Lee sentences that ship with gensim.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch.nn.utils.rnn import pad_sequence

from dlkit.text import Vocab, pad_batch, tokenize

LESSON = "nlp/02_text_classification.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp02"))


def test_says_which_data(result):
    assert result["data"].keys() - {"glove"} in ({"imdb"}, {"sentence_polarity"})
    assert "GloVe" in result["data"].get("glove", "GloVe")


def test_from_scratch_parts_equal_dlkit(result):
    for name in ("tokenizer_matches_dlkit", "vocab_matches_dlkit", "ids_round_trip"):
        assert outcome(result, name) == 1.0
    assert outcome(result, "padding_matches_pad_sequence") == 1.0
    assert outcome(result, "pad_fraction_bucketed") < outcome(result, "pad_fraction_random")
    assert outcome(result, "vocab_size_ngrams") > outcome(result, "vocab_size")  # bigrams added


def test_accuracies(result):
    if "imdb" not in result["data"]:
        pytest.skip("IMDB is not on disk: 50 test sentences say little")
    assert outcome(result, "baseline_acc") >= 0.82  # 2,000 reviews: TF-IDF is strong at once
    assert outcome(result, "fasttext_acc") >= 0.75
    assert outcome(result, "cnn_acc") >= 0.6
    assert outcome(result, "pad_fraction_bucketed") <= 0.3 < outcome(result, "pad_fraction_random")
    assert outcome(result, "test_unk_rate") < 0.1


def test_figures_and_ranges(result):
    names = {Path(f).name for f in result["figures"]}
    assert {"training_curves.png", "confusion_matrix.png"} <= names
    assert all(o["passed"] for o in result["outcomes"].values())
    for name in ("baseline", "fasttext", "cnn"):
        assert outcome(result, f"seconds_{name}") > 0


@pytest.mark.slow
def test_runs_with_no_dataset_on_the_sentences_gensim_ships(tmp_path):
    pytest.importorskip("gensim")
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "sentence_polarity" in data["data"] and "Pang & Lee" in data["data"]["sentence_polarity"]
    assert "quick mode: imdb is not on this machine" in data["stdout"]
    assert all(o["passed"] for o in data["outcomes"].values())


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


def test_padding_equals_pad_sequence(lesson):
    seqs = [torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([9, 10, 11, 12, 13])]
    x, lengths = lesson.pad_by_hand(seqs)
    assert x.shape == (3, 5) and lengths.tolist() == [3, 1, 5]
    assert torch.equal(x, pad_sequence(seqs, batch_first=True, padding_value=0))
    x_dlkit, lengths_dlkit = pad_batch([s.tolist() for s in seqs])
    assert torch.equal(x, x_dlkit) and torch.equal(lengths, lengths_dlkit)
    x_collate, y = lesson.collate([(s, i % 2) for i, s in enumerate(seqs)])
    assert torch.equal(x_collate, x) and y.tolist() == [0, 1, 0] and y.dtype == torch.long


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


def test_cnn_max_over_time_shapes(lesson):
    torch.manual_seed(0)
    model = lesson.TextCNN(vocab_size=30, embed_dim=6, num_filters=4, num_classes=2).double().eval()
    for T in (2, 5, 37):  # shorter than the widest filter too: padded up to it
        x = torch.randint(1, 30, (3, T))
        assert model.features(x).shape == (3, 12)  # (B, num_filters * 3 widths), whatever T
        assert model(x).shape == (3, 2)
    x = torch.randint(1, 30, (3, 37))
    e = model.embedding(x).transpose(1, 2)  # (B, D, T)
    pooled = [F.max_pool1d(F.relu(conv(e)), 37 - conv.kernel_size[0] + 1).squeeze(2) for conv in model.convs]
    torch.testing.assert_close(model.features(x), torch.cat(pooled, 1), rtol=0, atol=1e-6)
    assert torch.equal(model.embedding.weight[0], torch.zeros(6, dtype=torch.float64))  # padding_idx


def test_sentence_polarity_split(lesson):
    pytest.importorskip("gensim")
    data = lesson.sentence_polarity(seed=0)
    assert len(data) == 200 and data.classes == ["neg", "pos"] and data.labels.sum() == 100
    assert "\u2014" in "".join(data.texts)  # Windows-1252 dashes decoded
    test, train = lesson.split(data, 50)
    assert (len(test), len(train)) == (50, 150) and set(test.labels.tolist()) == {0, 1}
    assert test.texts + train.texts == data.texts and torch.equal(
        torch.cat([test.labels, train.labels]), data.labels
    )
    assert lesson.sentence_polarity(seed=0).texts == data.texts != lesson.sentence_polarity(seed=1).texts
