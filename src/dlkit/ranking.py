"""Ranking metrics for recommenders: one set, used by every model, checked on hand-worked cases.

A recommender's output for a batch of users is ``top``, a (U, K) tensor of item ids, best first
(:func:`top_k` makes it from scores, leaving out the items a user must not be shown). What the users
really liked is ``relevant``: a (U, I) boolean matrix (dense or scipy sparse), or one collection of
item ids per user. Every metric is the mean over the U users of a per-user value; a user with nothing
relevant has no defined recall or NDCG, so the caller leaves such users out (a ValueError says so).

    top = top_k(scores, 10, exclude=seen)                  # (U, 10) item ids
    metrics = ranking_metrics(top, relevant, num_items=I)  # {"hr": ..., "ndcg": ..., ...}

The definitions (per user, with ``hits[j]`` = 1 when the item at rank j + 1 is relevant, R = the
number of relevant items):

- HR@K, hit rate: 1 if any of the K items is relevant.
- Precision@K: hits / K.
- Recall@K: hits / min(K, R), as in Liang et al. 2018 (Mult-VAE), so that 1 is reachable when a user
  has more than K relevant items; ``capped=False`` gives hits / R (microsoft/recommenders' recall_at_k).
- NDCG@K: sum_j hits[j] / log2(j + 2), divided by its best possible value, sum over the first
  min(K, R) ranks of 1 / log2(j + 2) (binary relevance, Jarvelin and Kekalainen 2002).
- MAP@K: sum over the hits of (hits so far / rank), divided by min(K, R) (Spark MLlib's and
  microsoft/recommenders' map_at_k).
- Coverage: the share of the catalogue that appears in anybody's list (the other metrics reward
  recommending the same blockbusters to everyone; this one shows it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "average_precision_at_k",
    "coverage",
    "hit_rate_at_k",
    "hits_at_k",
    "map_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "top_k",
]


def top_k(scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The ``k`` highest-scoring items of each row of (U, I) ``scores``, best first: (U, k) int64.

    ``exclude`` (a (U, I) or (I,) boolean mask) marks items never to return (those a user has already
    seen, those nobody can be recommended). Ties go to the lower item id, so a ranking is the same on
    every machine (``torch.topk`` leaves the order of ties unspecified). Where a row has fewer than
    ``k`` items left, the missing places hold -1 (a miss for every metric here).
    """
    scores = torch.as_tensor(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (users, items), not of shape {tuple(scores.shape)}")
    k = min(k, scores.shape[1])
    scores = scores.float() if not scores.is_floating_point() else scores.clone()
    if exclude is not None:
        scores.masked_fill_(torch.as_tensor(exclude, dtype=torch.bool, device=scores.device), -torch.inf)
    values, order = torch.sort(scores, dim=1, descending=True, stable=True)
    top = order[:, :k].clone()
    top[values[:, :k] == -torch.inf] = -1
    return top


def _relevance_rows(relevant: Any, rows: int) -> tuple[Any, torch.Tensor]:
    """``relevant`` as a lookup ``(user row, item ids) -> bools`` and the number relevant per user."""
    if isinstance(relevant, torch.Tensor | np.ndarray):
        dense = torch.as_tensor(relevant).bool()
        return dense, dense.sum(dim=1)
    if hasattr(relevant, "tocsr"):  # a scipy sparse matrix
        csr = relevant.tocsr()
        sets = [set(csr.indices[csr.indptr[u] : csr.indptr[u + 1]].tolist()) for u in range(csr.shape[0])]
        return sets, torch.tensor([len(s) for s in sets])
    sets = [set(int(i) for i in items) for items in relevant]
    return sets, torch.tensor([len(s) for s in sets])


def hits_at_k(
    top: torch.Tensor, relevant: torch.Tensor | np.ndarray | Sequence[Collection[int]] | Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, K) booleans, True where ``top``'s item is relevant to its user, and (U,) relevant counts.

    ``relevant``: a (U, I) boolean matrix (torch, NumPy or scipy sparse) or one collection of item ids
    per user. Every metric below is a function of these two tensors.
    """
    top = torch.as_tensor(top, dtype=torch.int64).cpu()
    lookup, num_relevant = _relevance_rows(relevant, len(top))
    if len(num_relevant) != len(top):
        raise ValueError(f"top has {len(top)} users but relevant has {len(num_relevant)}")
    if isinstance(lookup, torch.Tensor):
        lookup = lookup.cpu()
        valid = top >= 0
        hits = lookup.gather(1, top.clamp(min=0)) & valid
    else:
        hits = torch.tensor(
            [[item in items for item in row] for row, items in zip(top.tolist(), lookup, strict=True)]
        )
        hits = hits.reshape(top.shape).bool()
    if bool((num_relevant == 0).any()):
        raise ValueError(
            f"{int((num_relevant == 0).sum())} users have no relevant item: leave them out "
            "(recall and NDCG are not defined for them)"
        )
    return hits, num_relevant


def _discounts(k: int) -> torch.Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))  # rank 1 -> 1, rank 2 -> 0.63


def hit_rate_at_k(top: torch.Tensor, relevant: Any) -> float:
    """The share of users with at least one relevant item in their list."""
    hits, _ = hits_at_k(top, relevant)
    return float(hits.any(dim=1).double().mean())


def precision_at_k(top: torch.Tensor, relevant: Any) -> float:
    """Mean over users of (relevant items in the list) / K."""
    hits, _ = hits_at_k(top, relevant)
    return float(hits.double().mean(dim=1).mean())


def recall_at_k(top: torch.Tensor, relevant: Any, *, capped: bool = True) -> float:
    """Mean over users of (relevant items in the list) / min(K, R); / R with ``capped=False``."""
    hits, num_relevant = hits_at_k(top, relevant)
    denominator = num_relevant.clamp(max=hits.shape[1]) if capped else num_relevant
    return float((hits.sum(dim=1) / denominator).double().mean())


def ndcg_at_k(top: torch.Tensor, relevant: Any) -> float:
    """Mean over users of DCG@K / ideal DCG@K with binary relevance and log2(rank + 1) discounts."""
    return _ndcg(*hits_at_k(top, relevant))


def _ndcg(hits: torch.Tensor, num_relevant: torch.Tensor) -> float:
    discounts = _discounts(hits.shape[1])
    dcg = (hits.double() * discounts).sum(dim=1)
    ideal = torch.cumsum(discounts, 0)[num_relevant.clamp(max=hits.shape[1]) - 1]
    return float((dcg / ideal).mean())


def average_precision_at_k(top: torch.Tensor, relevant: Any) -> torch.Tensor:
    """(U,) per-user average precision: sum over hits of precision at that rank, / min(K, R)."""
    return _average_precision(*hits_at_k(top, relevant))


def _average_precision(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    h = hits.double()
    precision_at_rank = torch.cumsum(h, dim=1) / torch.arange(1, h.shape[1] + 1, dtype=torch.float64)
    return (precision_at_rank * h).sum(dim=1) / num_relevant.clamp(max=h.shape[1])


def map_at_k(top: torch.Tensor, relevant: Any) -> float:
    """Mean average precision at K (the mean of :func:`average_precision_at_k`)."""
    return float(average_precision_at_k(top, relevant).mean())


def coverage(top: torch.Tensor, num_items: int) -> float:
    """The share of ``num_items`` (the catalogue that could be recommended) in at least one list."""
    top = torch.as_tensor(top)
    return len(torch.unique(top[top >= 0])) / num_items


def ranking_metrics(
    top: torch.Tensor, relevant: Any, *, num_items: int | None = None, prefix: str = ""
) -> dict[str, float]:
    """Every metric above at once (the hits computed once): hr, ndcg, recall, precision, map and, with
    ``num_items``, coverage; each name preceded by ``prefix`` (e.g. "val_")."""
    hits, num_relevant = hits_at_k(top, relevant)
    k = hits.shape[1]
    h = hits.double()
    metrics = {
        "hr": float(hits.any(dim=1).double().mean()),
        "ndcg": _ndcg(hits, num_relevant),
        "recall": float((h.sum(dim=1) / num_relevant.clamp(max=k)).mean()),
        "precision": float(h.mean(dim=1).mean()),
        "map": float(_average_precision(hits, num_relevant).mean()),
    }
    if num_items is not None:
        metrics["coverage"] = coverage(top, num_items)
    return {f"{prefix}{name}": value for name, value in metrics.items()}
