"""Checks for nlp/01 (word embeddings): autograd and `F.cosine_similarity` are the oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlkit.exercises import CheckFailed, expect, expect_tensor


def _sgns_loss(v: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The lesson's loss, written with F.logsigmoid: (B,)."""
    return -(F.logsigmoid((v * u).sum(-1)) + F.logsigmoid(-(n * v[:, None]).sum(-1)).sum(-1))


def check_sgns_grads(sgns_grads) -> None:
    g = torch.Generator().manual_seed(0)
    B, K, D = 6, 4, 5
    v, u = (torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True) for _ in "vu")
    n = torch.randn(B, K, D, generator=g, dtype=torch.float64, requires_grad=True)
    _sgns_loss(v, u, n).sum().backward()
    result = sgns_grads(v.detach(), u.detach(), n.detach())
    expect(isinstance(result, tuple | list) and len(result) == 3, "return a tuple (dv, du, dn)")
    for got, x, name in zip(result, (v, u, n), ("dv", "du", "dn"), strict=True):
        expect_tensor(got, x.grad, f"{name} for B={B}, K={K}, D={D}", reference="autograd through the loss")


def _vectors(seed: int, V: int = 40, D: int = 6) -> torch.Tensor:
    """Random directions with lengths from 0.1 to 10: a dot product and a cosine rank them differently."""
    g = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(V, D, generator=g, dtype=torch.float64), dim=1)
    return directions * torch.logspace(-1, 1, V, dtype=torch.float64)[torch.randperm(V, generator=g)][:, None]


def _ids(result, what: str, k: int) -> list[int]:
    try:
        ids = torch.as_tensor(result).flatten().tolist()
    except (TypeError, ValueError, RuntimeError):
        kind = type(result).__name__
        raise CheckFailed(f"{what} should be a tensor (or list) of word ids, not {kind}") from None
    expect(len(ids) == k, f"{what} returned {len(ids)} ids; expected k = {k}")
    return [int(i) for i in ids]


def check_nearest_neighbours(nearest_neighbours) -> None:
    for seed, word, k in ((1, 3, 5), (2, 17, 8)):
        vectors = _vectors(seed)
        similarity = F.cosine_similarity(vectors[word][None], vectors, dim=1)  # (V,)
        similarity[word] = float("-inf")
        expected = similarity.topk(k).indices.tolist()
        what = f"nearest_neighbours(vectors, {word}, k={k})"
        got = _ids(nearest_neighbours(vectors.clone(), word, k), what, k)
        expect(word not in got, f"{what} contains the word itself ({word}): leave it out")
        if sorted(got) == sorted(expected) and got != expected:
            raise CheckFailed(f"{what} has the right words in the wrong order: {got}; expected {expected} "
                              "(most similar first)")  # fmt: skip
        expect(got == expected, f"{what} is {got}; expected {expected} (F.cosine_similarity); a dot product "
               "without normalising favours long vectors")  # fmt: skip


def check_analogy(analogy) -> None:
    checked = 0
    for seed in range(3, 40):
        vectors = _vectors(seed, V=30, D=4)
        a, b, c = 0, 1, 2
        unit = F.normalize(vectors, dim=1)
        target = unit[b] - unit[a] + unit[c]
        similarity = F.cosine_similarity(target[None], vectors, dim=1)
        similarity[[a, b, c]] = float("-inf")
        expected = int(similarity.argmax())
        got = analogy(vectors.clone(), a, b, c)
        try:
            got = int(torch.as_tensor(got).flatten()[0]) if not isinstance(got, int) else got
        except (TypeError, ValueError, IndexError, RuntimeError):
            raise CheckFailed(f"analogy should return one word id (an int), got {got!r}") from None
        expect(got not in (a, b, c), f"analogy(vectors, {a}, {b}, {c}) returned {got}, one of the question "
               "words: leave a, b and c out")  # fmt: skip
        expect(got == expected, f"analogy(vectors, {a}, {b}, {c}) on seed {seed} is {got}; expected "
               f"{expected} (normalise each vector before b - a + c, then rank by cosine)")  # fmt: skip
        checked += 1
    expect(checked > 0, "no case was checked")
