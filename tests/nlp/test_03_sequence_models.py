"""Lesson 03 (sequence models): hand-written RNN/LSTM/GRU cells equal PyTorch's, packing, clipping, a char LM.

Quick mode trains a small LSTM for 300 steps on the first 150,000 characters of tiny shakespeare when
it is on disk, else on three sonnets that ship with dlkit (it learns them by heart): either way it
must beat the unigram baseline, which the lesson checks against ranges that can fail.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch import nn

from dlkit.data import bundled_sonnets
from dlkit.lesson import outcome_problems
from dlkit.text import CharVocab

LESSON = "nlp/03_sequence_models.py"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp03"))


def test_cells_packing_and_clipping(result):
    for name in ("rnn_cell_max_diff", "lstm_cell_max_diff", "gru_cell_max_diff", "packed_max_diff"):
        assert outcome(result, name) < 1e-6, name
    assert outcome(result, "grad_norm_after_clip") == pytest.approx(1.0, rel=1e-3)


def test_language_model_beats_the_baselines_with_ranges_that_can_fail(result):
    assert set(result["data"]) in ({"tiny_shakespeare"}, {"sonnets"})
    unigram = result["outcomes"]["unigram_val_loss"]
    assert unigram["chance"] > unigram["max"]  # ln(vocabulary size): a uniform guess must fail
    assert result["outcomes"]["lm_val_loss"]["chance"] == pytest.approx(unigram["value"])
    assert "seconds_train" not in result["outcomes"] and " s; val loss " in result["stdout"]
    assert "--- top-5" in result["stdout"]
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []
    assert {"gradient_vs_length.png", "loss_curves.png"} <= {Path(f).name for f in result["figures"]}


@pytest.mark.slow
def test_runs_without_data_on_the_bundled_sonnets(tmp_path):
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert set(data["data"]) == {"sonnets"} and "bundled" in data["data"]["sonnets"]
    assert all(o["passed"] for o in data["outcomes"].values())


def test_bundled_sonnets():
    sonnets = bundled_sonnets()
    assert sonnets.text.startswith("Shall I compare thee to a summer's day?\nThou art more lovely")
    assert len(sonnets) == 1837 and sonnets.text.count("\n") == 42  # three sonnets of 14 lines each
    assert "bundled" in sonnets.source


# --- The lesson's own functions, without running it ---------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    module = load_definitions(ROOT / LESSON)
    # the functions that read the lesson's globals
    module.device, module.cfg = torch.device("cpu"), SimpleNamespace(seed=0, seq_len=7)
    module.amp_dtype = None  # float32
    return module


def _weights(module: nn.Module) -> list[torch.Tensor]:
    return [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0]


def test_rnn_cell_unrolled_equals_nn_rnn_in_float64(lesson):
    torch.manual_seed(1)
    rnn = nn.RNN(4, 6, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 6, dtype=torch.float64)
    out, h_n = rnn(x, h0)
    ours, h_last = lesson.unroll(lesson.rnn_cell, x, h0[0], _weights(rnn))
    torch.testing.assert_close(ours, out, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_last, h_n[0], atol=1e-6, rtol=0)
    params = [x, *_weights(rnn)]
    grads = torch.autograd.grad(out.sin().sum(), params)
    our_grads = torch.autograd.grad(ours.sin().sum(), params)
    for a, b in zip(our_grads, grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_lstm_and_gru_cells_equal_pytorch_in_float64(lesson):
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 5, batch_first=True, dtype=torch.float64)
    gru = nn.GRU(3, 5, batch_first=True, dtype=torch.float64)
    x = torch.randn(4, 11, 3, dtype=torch.float64)
    h0, c0 = torch.randn(2, 1, 4, 5, dtype=torch.float64)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    ours, (h, c) = lesson.unroll(lesson.lstm_cell, x, (h0[0], c0[0]), _weights(lstm))
    for a, b in ((ours, out), (h, h_n[0]), (c, c_n[0])):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    out, h_n = gru(x, h0)
    ours, h = lesson.unroll(lesson.gru_cell, x, h0[0], _weights(gru))
    torch.testing.assert_close(ours, out, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, h_n[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_lessons_comparison_includes_gradients(lesson, kind):
    for seed in range(3):
        assert lesson.max_diff_vs_torch(kind, seed=seed, B=2, T=12, D=3, H=4) < 1e-6


def test_packing_gives_each_sequence_its_own_final_state(lesson):
    packed, padded = lesson.packed_vs_alone([3, 9, 1, 6], seed=1)
    assert packed < 1e-12 and padded > 1e-3
    packed, padded = lesson.packed_vs_alone([5, 5], seed=1)  # no padding: nothing leaks
    assert packed < 1e-12 and padded < 1e-12


def test_gradients_vanish_or_explode_with_the_gain(lesson):
    small = [lesson.gradient_through_time(0.5, T)[0] for T in (5, 20, 40)]
    large = [lesson.gradient_through_time(3.0, T)[0] for T in (5, 40, 80)]
    assert small[0] > small[1] > small[2] and small[2] < 1e-8
    assert large[0] < large[1] < large[2] and large[2] > 1e6


def test_top_k_only_draws_the_k_most_likely_ids(lesson):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 20, generator=g)  # (B, V)
    top3 = logits.topk(3, dim=1).indices  # (B, 3)
    draws = torch.stack([lesson.sample_next(logits, 1.0, top_k=3, generator=g) for _ in range(600)])  # (N, B)
    for b in range(3):
        assert set(draws[:, b].tolist()) == set(top3[b].tolist())  # each of the 3, and nothing else
    only = lesson.sample_next(logits, 5.0, top_k=1, generator=g)
    assert torch.equal(only, logits.argmax(dim=1))


def test_temperature(lesson):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 30, generator=g)
    assert torch.equal(lesson.sample_next(logits, 0), logits.argmax(dim=1))
    assert torch.equal(lesson.sample_next(logits, 1e-3, generator=g), logits.argmax(dim=1))  # T -> 0
    row = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    draws = torch.cat([lesson.sample_next(row.expand(1000, 4), 1.0, generator=g) for _ in range(10)])
    frequencies = torch.bincount(draws, minlength=4) / len(draws)
    torch.testing.assert_close(frequencies, row.softmax(dim=1)[0], atol=0.02, rtol=0)  # T=1: the softmax
    hot = torch.cat([lesson.sample_next(row.expand(1000, 4), 4.0, generator=g) for _ in range(10)])
    assert (hot == 0).float().mean() < frequencies[0] - 0.2  # a high temperature flattens


def test_random_windows_predict_the_next_character(lesson):
    ids = torch.arange(100)
    X, y = lesson.random_windows(ids, 8, 10, torch.Generator().manual_seed(0))
    assert X.shape == y.shape == (8, 10)
    assert torch.equal(y, X + 1)  # y is X shifted by one character
    assert torch.equal(X[:, 1:] - X[:, :-1], torch.ones(8, 9, dtype=torch.long))  # contiguous windows


def test_val_loss_carries_the_state_across_chunks(lesson):
    torch.manual_seed(0)
    model = lesson.CharLSTM(vocab_size=6, embed_dim=4, hidden_size=8, num_layers=2)
    ids = torch.randint(0, 6, (60,))
    logits, _ = model(ids[None, :-1])  # (1, 59, V): the whole sequence at once
    expected = F.cross_entropy(logits[0], ids[1:]).item()
    assert lesson.val_loss(model, ids, num_streams=1) == pytest.approx(expected, abs=1e-5)  # in chunks of 7
    assert model.training  # back in training mode


def test_generate_writes_characters_of_the_vocabulary(lesson):
    lesson.vocab = CharVocab.from_text("ab c\n")
    model = lesson.CharLSTM(len(lesson.vocab), 4, 8, 1)
    text = lesson.generate(model, "ab", 50, temperature=1.0, top_k=3)
    assert len(text) == 50 and set(text) <= set(lesson.vocab.chars)
    assert text == lesson.generate(model, "ab", 50, temperature=1.0, top_k=3)  # seeded
