"""Lesson 04 (attention and transformers): attention by hand equals PyTorch's, and the lesson runs.

Quick mode trains a small from-scratch transformer on SYNTHETIC reviews (a transformer learns nothing
from a few hundred real reviews in seconds): it must learn them, which the lesson checks against
ranges that can fail. The unit tests below check the from-scratch parts against PyTorch in float64.
Fine-tuning a pretrained transformer is lesson 05.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch import nn

from dlkit.lesson import outcome_problems

LESSON = "nlp/04_attention_transformers.py"
MASK_CASES = ["none", "padding", "causal", "additive"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_lesson(LESSON, tmp_path=tmp_path_factory.mktemp("nlp04"))


def test_attention_matches_pytorch_in_the_run(result):
    for case in MASK_CASES:
        assert outcome(result, f"sdpa_max_diff_{case}") < 1e-6
    assert outcome(result, "mha_max_diff") < 1e-6


def test_trains_from_scratch_on_synthetic_reviews_and_says_so(result):
    assert "SYNTHETIC" in result["data"]["reviews"] and "SYNTHETIC reviews" in result["stdout"]
    assert {"train_acc", "test_acc"} <= set(result["outcomes"])
    assert not any("minilm" in name or "seconds" in name for name in result["outcomes"])
    assert all(o["passed"] for o in result["outcomes"].values()) and outcome_problems(result) == []


def test_figures(result):
    names = {Path(f).name for f in result["figures"]}
    assert {"positional_encodings.png", "cls_attention.png"} <= names


# --- The lesson's own functions, without running it ---------------------------------------------


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


def double(*shape: int, seed: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


@pytest.mark.parametrize("case", MASK_CASES)
def test_attention_equals_scaled_dot_product_attention(lesson, case):
    causal, (B, h, Tk, d, dv) = case == "causal", (2, 3, 7, 8, 4)
    Tq = Tk if causal else 5  # queries and keys of different lengths (cross-attention), but causal
    q, k, v = (
        double(B, h, T, n, seed=i, requires_grad=True)
        for i, (T, n) in enumerate([(Tq, d), (Tk, d), (Tk, dv)])
    )
    mask = double(B, h, Tq, Tk, seed=9) if case == "additive" else None
    if case == "padding":  # the second sequence has 2 keys, then padding
        mask = (torch.arange(Tk) < torch.tensor([Tk, 2])[:, None])[:, None, None, :]  # (B, 1, 1, Tk)
    ours, weights = lesson.attention(q, k, v, mask, is_causal=causal)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), rtol=0, atol=1e-12)
    if case == "padding":
        assert weights[1, ..., 2:].abs().max() == 0  # no weight on the padded keys
    if causal:
        assert weights.triu(diagonal=1).abs().max() == 0  # nothing from the future
    grads = [torch.autograd.grad(out.square().sum(), (q, k, v)) for out in (ours, theirs)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", MASK_CASES)
def test_lessons_own_check_is_tight(lesson, case):
    assert lesson.sdpa_max_diff(case, B=2, h=2, T=9, d=16, seed=3) < 1e-6


def test_multi_head_attention_equals_nn_multihead_attention(lesson):
    assert lesson.mha_max_diff() < 1e-6
    assert lesson.mha_max_diff(B=3, T=11, D=32, h=8, seed=5) < 1e-6
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(16, 4, batch_first=True, dtype=torch.float64)
    ours = lesson.MultiHeadAttention(16, 4).double()
    with torch.no_grad():
        ours.in_proj.weight.copy_(theirs.in_proj_weight), ours.in_proj.bias.copy_(theirs.in_proj_bias)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    x = double(2, 5, 16, seed=1, requires_grad=True)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    y, _ = theirs(x, x, x, key_padding_mask=padding, need_weights=True)
    our_y, _ = ours(x, padding)  # the fused path
    torch.testing.assert_close(our_y, y, rtol=0, atol=1e-6)
    (gx,), (our_gx,) = torch.autograd.grad(y.sum(), x), torch.autograd.grad(our_y.sum(), x)
    torch.testing.assert_close(our_gx, gx, rtol=0, atol=1e-6)


def test_sinusoidal_positions(lesson):
    pe = lesson.sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    position = torch.arange(50.0)
    torch.testing.assert_close(pe[:, 0], torch.sin(position))  # the fastest pair: wavelength 2 pi
    torch.testing.assert_close(pe[:, 1], torch.cos(position))
    torch.testing.assert_close(pe[:, 14], torch.sin(position / 10_000 ** (14 / 16)))
    similarity = lesson.cosine_similarities(pe)
    assert similarity[10, 11] > similarity[10, 30]  # nearby positions look alike


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_classifier_ignores_padding(lesson, positions):
    cfg = lesson.Config(max_len=12, d_model=16, num_heads=2, num_layers=2)
    torch.manual_seed(0)
    model = lesson.TransformerClassifier(30, 2, cfg, positions).double().eval()
    ids = torch.tensor([[5, 7, 9, 2, 0, 0, 0], [3, 4, 5, 6, 7, 8, 9]])  # (B, T), 0 = padding
    logits, weights = model(ids, return_weights=True)
    assert logits.shape == (2, 2) and len(weights) == 2 and weights[0].shape == (2, 2, 8, 8)
    torch.testing.assert_close(model(ids), logits, rtol=0, atol=1e-10)  # fused kernel = our attention
    torch.testing.assert_close(model(ids[:1, :4]), logits[:1], rtol=0, atol=1e-10)  # no padding at all
    assert weights[-1][0, :, :, 5:].abs().max() == 0  # [CLS] + 4 words: padding gets no weight


def test_warmup_then_linear(lesson):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = lesson.warmup_then_linear(optimizer, total_steps=100, warmup=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step(), scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # up in 10 steps
    assert max(lrs) == pytest.approx(1.0) and 0 < lrs[-1] < 0.05  # then down to about 0
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
