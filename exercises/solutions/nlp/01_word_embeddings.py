"""Reference solutions for nlp/01's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sgns_grads(v: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
    pos = torch.sigmoid((u * v).sum(-1)) - 1  # (B,): d/dx [-log s(x)] at x = u.v
    neg = torch.sigmoid((n * v[:, None]).sum(-1))  # (B, K): d/dx [-log s(-x)] at x = n_k.v
    dv = pos[:, None] * u + (neg[..., None] * n).sum(1)
    return dv, pos[:, None] * v, neg[..., None] * v[:, None]


def nearest_neighbours(vectors: torch.Tensor, word: int, k: int) -> torch.Tensor:
    unit = F.normalize(vectors, dim=1)
    similarity = unit @ unit[word]  # (V,)
    similarity[word] = float("-inf")
    return similarity.topk(k).indices


def analogy(vectors: torch.Tensor, a: int, b: int, c: int) -> int:
    unit = F.normalize(vectors, dim=1)
    similarity = unit @ F.normalize(unit[b] - unit[a] + unit[c], dim=0)
    similarity[[a, b, c]] = float("-inf")
    return int(similarity.argmax())
