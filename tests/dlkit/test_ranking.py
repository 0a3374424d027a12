"""dlkit.ranking: every metric on cases worked out by hand, NDCG against scikit-learn, top_k's rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dlkit.ranking import (
    average_precision_at_k,
    coverage,
    hit_rate_at_k,
    hits_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    top_k,
)

# Two users, K = 3. User 0 gets [5, 2, 7] and liked {2, 9}: one hit, at rank 2.
# User 1 gets [1, 3, 4] and liked {1, 4, 6, 8}: hits at ranks 1 and 3.
TOP = torch.tensor([[5, 2, 7], [1, 3, 4]])
RELEVANT = [{2, 9}, {1, 4, 6, 8}]
D2, D3 = 1 / math.log2(3), 1 / math.log2(4)  # the discounts of ranks 2 and 3 (rank 1: 1)


def test_each_metric_on_a_case_worked_by_hand():
    assert hit_rate_at_k(TOP, RELEVANT) == 1.0
    assert precision_at_k(TOP, RELEVANT) == pytest.approx((1 / 3 + 2 / 3) / 2)
    # recall: 1 / min(3, 2) and 2 / min(3, 4); uncapped 1 / 2 and 2 / 4
    assert recall_at_k(TOP, RELEVANT) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert recall_at_k(TOP, RELEVANT, capped=False) == pytest.approx((1 / 2 + 2 / 4) / 2)
    # NDCG: user 0 = D2 / (1 + D2) (two relevant: the ideal fills ranks 1-2),
    # user 1 = (1 + D3) / (1 + D2 + D3) (four relevant: the ideal fills all three ranks)
    ndcg0, ndcg1 = D2 / (1 + D2), (1 + D3) / (1 + D2 + D3)
    assert ndcg_at_k(TOP, RELEVANT) == pytest.approx((ndcg0 + ndcg1) / 2)
    assert (ndcg0, ndcg1) == pytest.approx((0.3869, 0.7039), abs=1e-4)
    # AP: user 0 = (1/2) / min(3, 2); user 1 = (1/1 + 2/3) / min(3, 4)
    ap = average_precision_at_k(TOP, RELEVANT)
    assert ap.tolist() == pytest.approx([0.25, (1 + 2 / 3) / 3])
    assert map_at_k(TOP, RELEVANT) == pytest.approx((0.25 + 5 / 9) / 2)
    assert coverage(TOP, num_items=12) == 6 / 12


def test_a_perfect_list_scores_one_and_an_empty_one_zero():
    perfect = torch.tensor([[4, 1, 6], [2, 0, 9]])
    liked = [{1, 4, 6, 8}, {0, 2}]  # user 1 has only two relevant: a list holding both is perfect
    metrics = ranking_metrics(perfect, liked)
    assert metrics["hr"] == metrics["ndcg"] == metrics["recall"] == metrics["map"] == pytest.approx(1.0)
    assert metrics["precision"] == pytest.approx((3 / 3 + 2 / 3) / 2)  # precision cannot reach 1 here
    wrong = torch.tensor([[0, 2, 3], [1, 3, 4]])
    assert ranking_metrics(wrong, liked) == {
        "hr": 0.0,
        "ndcg": 0.0,
        "recall": 0.0,
        "precision": 0.0,
        "map": 0.0,
    }


def test_relevance_may_be_a_dense_or_sparse_matrix_or_sets():
    dense = torch.zeros(2, 12, dtype=torch.bool)
    for user, items in enumerate(RELEVANT):
        dense[user, list(items)] = True
    expected = ranking_metrics(TOP, RELEVANT, num_items=12)
    assert ranking_metrics(TOP, dense, num_items=12) == pytest.approx(expected)
    assert ranking_metrics(TOP, dense.numpy(), num_items=12) == pytest.approx(expected)
    assert ranking_metrics(TOP, sp.csr_matrix(dense.numpy()), num_items=12) == pytest.approx(expected)
    assert ranking_metrics(TOP.numpy(), RELEVANT, prefix="val_")["val_hr"] == 1.0


def test_ndcg_equals_scikit_learns_on_random_rankings():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    users, items, k = 40, 30, 5
    relevant = rng.random((users, items)) < 0.15
    relevant[relevant.sum(1) == 0, 0] = True  # every user likes something
    scores = rng.random((users, items))  # distinct scores: no ties for scikit-learn to average
    top = top_k(torch.from_numpy(scores), k)
    theirs = ndcg_score(relevant.astype(float), scores, k=k)
    assert ndcg_at_k(top, relevant) == pytest.approx(theirs, abs=1e-12)


def test_top_k_breaks_ties_by_the_lower_id_and_never_returns_excluded_items():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 4], [0, 1, 2]]
    exclude = torch.tensor([[False, True, False, False, False], [True, True, True, False, True]])
    assert top_k(scores, 3, exclude=exclude).tolist() == [[2, 4, 3], [3, -1, -1]]  # -1: nothing left
    assert top_k(scores, 2, exclude=torch.tensor([False, False, True, False, False])).tolist() == [
        [1, 4],
        [0, 1],
    ]
    hits, num_relevant = hits_at_k(torch.tensor([[3, -1, -1]]), [{3, 0}])
    assert hits.tolist() == [[True, False, False]] and num_relevant.tolist() == [2]  # -1 is a miss
    assert coverage(torch.tensor([[3, -1, -1]]), num_items=5) == 1 / 5


def test_users_with_nothing_relevant_are_refused():
    with pytest.raises(ValueError, match="no relevant item"):
        ranking_metrics(TOP, [{2}, set()])
    with pytest.raises(ValueError, match="2 users but relevant has 1"):
        ranking_metrics(TOP, [{2}])
    with pytest.raises(ValueError, match="users, items"):
        top_k(torch.zeros(5), 2)
