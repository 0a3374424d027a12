"""Checks for nlp/02 (text classification): `F.embedding_bag`, scikit-learn's `TfidfTransformer` and
`F.conv1d` are the oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlkit.exercises import expect, expect_tensor


def check_bag_mean(bag_mean) -> None:
    g = torch.Generator().manual_seed(0)
    V, D = 12, 5
    weight = torch.randn(V, D, generator=g, dtype=torch.float64)  # row 0 (padding) is not zero here
    lengths = torch.tensor([6, 3, 1, 0])  # the last review has no real token
    ids = torch.randint(1, V, (4, 6), generator=g) * (torch.arange(6) < lengths[:, None])
    expected = F.embedding_bag(ids, weight, mode="mean", padding_idx=0)
    what = f"bag_mean(ids, weight) for lengths {lengths.tolist()} padded to 6"
    expect_tensor(bag_mean(ids, weight.clone()), expected, what, reference="nn.EmbeddingBag(mode='mean', "
                  "padding_idx=0); the last row has no real token: zeros")  # fmt: skip


def check_tfidf(tfidf) -> None:
    g = torch.Generator().manual_seed(1)
    counts = torch.poisson(torch.rand(7, 9, generator=g, dtype=torch.float64) * 2, generator=g)
    counts[:, 0] = torch.tensor([3.0, 1, 2, 5, 1, 1, 4])  # one token in every row: idf 1
    counts[0, 1:] = 0  # a row with one token only
    got = tfidf(counts.clone())  # first: a stub stops here, before scikit-learn is imported
    from sklearn.feature_extraction.text import TfidfTransformer

    expected = TfidfTransformer(sublinear_tf=True).fit_transform(counts.numpy()).toarray()
    expect_tensor(got, torch.from_numpy(expected), "tfidf(counts) for 7 rows of 9 tokens",
                  reference="TfidfTransformer(sublinear_tf=True)")  # fmt: skip


def check_conv_max_over_time(conv_max_over_time) -> None:
    g = torch.Generator().manual_seed(2)
    B, T, D, Fn = 3, 9, 4, 6
    for k in (3, 5):
        e = torch.randn(B, T, D, generator=g, dtype=torch.float64)
        weight = torch.randn(Fn, D, k, generator=g, dtype=torch.float64)
        bias = torch.randn(Fn, generator=g, dtype=torch.float64)
        expected = F.relu(F.conv1d(e.transpose(1, 2), weight, bias)).amax(dim=2)
        got = conv_max_over_time(e.clone(), weight.clone(), bias.clone())
        expect(not isinstance(got, torch.Tensor) or got.shape != (B, Fn, T - k + 1),
               f"conv_max_over_time returned one value per position, {(B, Fn, T - k + 1)}: take the max "
               "over the positions")  # fmt: skip
        expect_tensor(got, expected, f"conv_max_over_time for k={k}, e {(B, T, D)}",
                      reference="F.conv1d on e.transpose(1, 2), ReLU, max over time")  # fmt: skip
