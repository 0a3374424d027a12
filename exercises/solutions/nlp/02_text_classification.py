"""Reference solutions for nlp/02's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import torch


def bag_mean(ids: torch.Tensor, weight: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    real = (ids != pad_id).to(weight.dtype)  # (B, T)
    summed = (weight[ids] * real[..., None]).sum(dim=1)  # (B, D)
    return summed / real.sum(dim=1, keepdim=True).clamp(min=1)


def tfidf(counts: torch.Tensor) -> torch.Tensor:
    tf = torch.where(counts > 0, 1 + counts.clamp(min=1).log(), torch.zeros_like(counts))
    df = (counts > 0).sum(dim=0)
    idf = ((1 + counts.shape[0]) / (1 + df)).log() + 1
    x = tf * idf
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


def conv_max_over_time(e: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    windows = e.unfold(1, weight.shape[2], 1)  # (B, T - k + 1, D, k)
    responses = torch.einsum("btdk,fdk->btf", windows, weight) + bias  # (B, T - k + 1, F)
    return responses.relu().amax(dim=1)
