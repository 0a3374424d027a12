"""Plausible wrong answers to nlp/01's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sgns_grads_sign_of_negatives(v, u, n):
    pos = torch.sigmoid((u * v).sum(-1)) - 1
    neg = torch.sigmoid((n * v[:, None]).sum(-1)) - 1  # treats the noise words like the positive one
    return pos[:, None] * u + (neg[..., None] * n).sum(1), pos[:, None] * v, neg[..., None] * v[:, None]


def sgns_grads_no_negatives_in_dv(v, u, n):
    pos = torch.sigmoid((u * v).sum(-1)) - 1
    neg = torch.sigmoid((n * v[:, None]).sum(-1))
    return pos[:, None] * u, pos[:, None] * v, neg[..., None] * v[:, None]  # dv forgets the n_k terms


def sgns_grads_mean_over_negatives(v, u, n):
    pos = torch.sigmoid((u * v).sum(-1)) - 1
    neg = torch.sigmoid((n * v[:, None]).sum(-1))
    return pos[:, None] * u + (neg[..., None] * n).mean(1), pos[:, None] * v, neg[..., None] * v[:, None]


def nearest_by_dot_product(vectors, word, k):
    similarity = vectors @ vectors[word]  # not normalised: long vectors win
    similarity[word] = float("-inf")
    return similarity.topk(k).indices


def nearest_including_itself(vectors, word, k):
    unit = F.normalize(vectors, dim=1)
    return (unit @ unit[word]).topk(k).indices  # the word itself comes first


def nearest_least_similar_first(vectors, word, k):
    unit = F.normalize(vectors, dim=1)
    similarity = unit @ unit[word]
    similarity[word] = float("-inf")
    return similarity.topk(k).indices.flip(0)


def analogy_keeps_question_words(vectors, a, b, c):
    unit = F.normalize(vectors, dim=1)
    return int((unit @ (unit[b] - unit[a] + unit[c])).argmax())


def analogy_raw_vectors(vectors, a, b, c):
    target = vectors[b] - vectors[a] + vectors[c]  # no normalising: the longest vector dominates
    similarity = F.cosine_similarity(target[None], vectors, dim=1)
    similarity[[a, b, c]] = float("-inf")
    return int(similarity.argmax())


WRONG = {
    "sgns_grads": [
        sgns_grads_sign_of_negatives,
        sgns_grads_no_negatives_in_dv,
        sgns_grads_mean_over_negatives,
    ],
    "nearest_neighbours": [nearest_by_dot_product, nearest_including_itself, nearest_least_similar_first],
    "analogy": [analogy_keeps_question_words, analogy_raw_vectors],
}
