"""Checks for nlp/04 (attention): `F.scaled_dot_product_attention` and `nn.MultiheadAttention` are the
oracles, in float64."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import expect, expect_tensor


def _qkv(seed: int, Tq: int, Tk: int, B: int = 2, h: int = 2, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, h, Tq, d, generator=g, dtype=torch.float64)
    return q, *(torch.randn(B, h, Tk, d, generator=g, dtype=torch.float64) for _ in "kv")


def check_causal_attention(causal_attention) -> None:
    q, k, v = _qkv(0, 6, 6)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expect_tensor(causal_attention(q, k, v), expected, "causal_attention with Tq = Tk = 6",
                  reference="F.scaled_dot_product_attention(..., is_causal=True)")  # fmt: skip
    for Tq, Tk in ((2, 7), (1, 5)):
        q, k, v = _qkv(Tq, Tq, Tk)
        allowed = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)  # query i: position Tk-Tq+i
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        expect_tensor(causal_attention(q, k, v), expected, f"causal_attention with Tq = {Tq} new queries, "
                      f"Tk = {Tk} keys (query i is position {Tk - Tq} + i: it sees keys 0..{Tk - Tq} + i)",
                      reference="F.scaled_dot_product_attention with a lower-right causal mask")  # fmt: skip


def check_decoder_mask(decoder_mask) -> None:
    lengths, T = torch.tensor([5, 3, 1]), 5
    mask = decoder_mask(lengths.clone(), T)
    what = f"decoder_mask(lengths={lengths.tolist()}, T={T})"
    expect(isinstance(mask, torch.Tensor) and mask.dtype == torch.bool,
           f"{what} should be a boolean tensor (True = may attend), got "
           f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")  # fmt: skip
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    expected = causal & (torch.arange(T) < lengths[:, None])[:, None, None, :]  # (B, 1, T, T)
    expect(mask.any(dim=-1).all(), f"{what} has a row with no True: its softmax would be NaN (mask keys, "
           "not queries)")  # fmt: skip
    expect_tensor(mask.double(), expected.double(), f"{what} (1 = may attend; index (b, 0, query, key))",
                  reference="causal AND key < length")  # fmt: skip
    # and what it is for: the batch equals each sequence alone with is_causal=True, at the real positions
    q, k, v = _qkv(3, T, T, B=3)
    batch = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    for b, n in enumerate(lengths.tolist()):
        alone = F.scaled_dot_product_attention(q[b, :, :n], k[b, :, :n], v[b, :, :n], is_causal=True)
        expect_tensor(batch[b, :, :n], alone, f"attention on the batch with your mask, sequence {b}",
                      reference="the sequence alone, is_causal=True")  # fmt: skip


def check_cross_attention(cross_attention) -> None:
    torch.manual_seed(0)
    B, Tq, Tk, D, h = 2, 3, 5, 8, 2
    mha = nn.MultiheadAttention(D, h, batch_first=True, dtype=torch.float64)
    nn.init.normal_(mha.in_proj_bias), nn.init.normal_(mha.out_proj.bias)  # PyTorch starts them at 0
    x, memory = torch.randn(B, Tq, D, dtype=torch.float64), torch.randn(B, Tk, D, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = mha(x, memory, memory)
        weights = [
            p.detach().clone() for p in (mha.in_proj_weight, mha.in_proj_bias, *mha.out_proj.parameters())
        ]
        got = cross_attention(x.clone(), memory.clone(), *weights, h)
    expect_tensor(got, expected, f"cross_attention for x {(B, Tq, D)}, memory {(B, Tk, D)}, {h} heads",
                  reference="nn.MultiheadAttention(x, memory, memory)")  # fmt: skip
