"""Plausible wrong answers to nlp/04's exercises: each must make its check fail."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def causal_top_left(q, k, v):
    allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()  # right only when Tq = Tk
    return _scores(q, k).masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v


def causal_off_by_one(q, k, v):
    Tq, Tk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq - 1)  # a query cannot see itself
    return _scores(q, k).masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v


def causal_mask_after_softmax(q, k, v):
    Tq, Tk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
    return (_scores(q, k).softmax(dim=-1) * allowed) @ v  # the weights no longer sum to 1


def decoder_mask_or(lengths, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal | (torch.arange(T) < lengths[:, None])[:, None, None, :]  # either rule, not both


def decoder_mask_on_queries(lengths, T):
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return causal & (torch.arange(T) < lengths[:, None])[:, None, :, None]  # masks padded queries: NaN rows


def decoder_mask_no_padding(lengths, T):
    return torch.ones(T, T, dtype=torch.bool).tril().expand(len(lengths), 1, T, T)  # causal only


def _project(x, memory, in_proj_weight, in_proj_bias):
    W_q, W_k, W_v = in_proj_weight.chunk(3)
    b_q, b_k, b_v = in_proj_bias.chunk(3)
    return F.linear(x, W_q, b_q), F.linear(memory, W_k, b_k), F.linear(memory, W_v, b_v)


def cross_attention_heads_without_transpose(x, memory, in_proj_weight, in_proj_bias, out_proj_weight,
                                            out_proj_bias, num_heads):  # fmt: skip
    B, Tq, D = x.shape
    q, k, v = _project(x, memory, in_proj_weight, in_proj_bias)
    heads = [t.reshape(B, num_heads, -1, D // num_heads) for t in (q, k, v)]  # mixes positions and features
    y = F.scaled_dot_product_attention(*heads)
    return F.linear(y.reshape(B, Tq, D), out_proj_weight, out_proj_bias)


def cross_attention_merge_without_transpose(x, memory, in_proj_weight, in_proj_bias, out_proj_weight,
                                            out_proj_bias, num_heads):  # fmt: skip
    B, Tq, D = x.shape
    q, k, v = _project(x, memory, in_proj_weight, in_proj_bias)
    heads = [t.view(B, -1, num_heads, D // num_heads).transpose(1, 2) for t in (q, k, v)]
    y = F.scaled_dot_product_attention(*heads)  # (B, h, Tq, hs)
    return F.linear(y.reshape(B, Tq, D), out_proj_weight, out_proj_bias)  # heads not moved back together


def cross_attention_weights_transposed(x, memory, in_proj_weight, in_proj_bias, out_proj_weight,
                                       out_proj_bias, num_heads):  # fmt: skip
    B, Tq, D = x.shape
    W_q, W_k, W_v = in_proj_weight.chunk(3)
    b_q, b_k, b_v = in_proj_bias.chunk(3)
    q, k, v = x @ W_q + b_q, memory @ W_k + b_k, memory @ W_v + b_v  # W, not W.T
    heads = [t.view(B, -1, num_heads, D // num_heads).transpose(1, 2) for t in (q, k, v)]
    y = F.scaled_dot_product_attention(*heads)
    return F.linear(y.transpose(1, 2).reshape(B, Tq, D), out_proj_weight, out_proj_bias)


WRONG = {
    "causal_attention": [causal_top_left, causal_off_by_one, causal_mask_after_softmax],
    "decoder_mask": [decoder_mask_or, decoder_mask_on_queries, decoder_mask_no_padding],
    "cross_attention": [
        cross_attention_heads_without_transpose,
        cross_attention_merge_without_transpose,
        cross_attention_weights_transposed,
    ],
}
