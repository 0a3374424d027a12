"""Reference solutions for nlp/04's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    Tq, Tk = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Tq, Tk)
    allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v


def decoder_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    causal = torch.ones(T, T, dtype=torch.bool, device=lengths.device).tril()  # (T, T): key j <= query i
    real_keys = torch.arange(T, device=lengths.device) < lengths[:, None]  # (B, T)
    return causal & real_keys[:, None, None, :]  # (B, 1, T, T)


def cross_attention(x, memory, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, num_heads):
    B, Tq, D = x.shape
    W_q, W_k, W_v = in_proj_weight.chunk(3)
    b_q, b_k, b_v = in_proj_bias.chunk(3)
    q, k, v = F.linear(x, W_q, b_q), F.linear(memory, W_k, b_k), F.linear(memory, W_v, b_v)
    heads = [t.view(B, -1, num_heads, D // num_heads).transpose(1, 2) for t in (q, k, v)]  # (B, h, T, hs)
    y = F.scaled_dot_product_attention(*heads)  # (B, h, Tq, hs)
    return F.linear(y.transpose(1, 2).reshape(B, Tq, D), out_proj_weight, out_proj_bias)
