"""Plausible wrong answers to nlp/02's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def bag_mean_with_padding(ids, weight, pad_id=0):
    return weight[ids].mean(dim=1)  # the padding rows are averaged in


def bag_mean_divides_by_length(ids, weight, pad_id=0):
    real = (ids != pad_id).to(weight.dtype)
    return (weight[ids] * real[..., None]).sum(dim=1) / ids.shape[1]  # by T, not by the real tokens


def bag_mean_nan_when_empty(ids, weight, pad_id=0):
    real = (ids != pad_id).to(weight.dtype)
    return (weight[ids] * real[..., None]).sum(dim=1) / real.sum(dim=1, keepdim=True)  # 0 / 0


def tfidf_unsmoothed_idf(counts):
    tf = torch.where(counts > 0, 1 + counts.clamp(min=1).log(), torch.zeros_like(counts))
    idf = (counts.shape[0] / (counts > 0).sum(dim=0)).log() + 1  # no +1 smoothing
    x = tf * idf
    return x / x.norm(dim=1, keepdim=True)


def tfidf_raw_counts(counts):
    idf = ((1 + counts.shape[0]) / (1 + (counts > 0).sum(dim=0))).log() + 1
    x = counts * idf  # not sublinear: the tenth "bad" counts as much as the first
    return x / x.norm(dim=1, keepdim=True)


def tfidf_not_normalised(counts):
    tf = torch.where(counts > 0, 1 + counts.clamp(min=1).log(), torch.zeros_like(counts))
    return tf * (((1 + counts.shape[0]) / (1 + (counts > 0).sum(dim=0))).log() + 1)


def conv_weight_flattened_in_the_wrong_order(e, weight, bias):
    k = weight.shape[2]
    windows = e.unfold(1, k, 1).transpose(2, 3).flatten(2)  # (B, T', k * D), but weight is (F, D * k)
    return (windows @ weight.flatten(1).T + bias).relu().amax(dim=1)


def conv_flipped_kernel(e, weight, bias):
    windows = e.unfold(1, weight.shape[2], 1)
    return (torch.einsum("btdk,fdk->btf", windows, weight.flip(2)) + bias).relu().amax(dim=1)  # convolution


def conv_mean_over_time(e, weight, bias):
    windows = e.unfold(1, weight.shape[2], 1)
    return (torch.einsum("btdk,fdk->btf", windows, weight) + bias).relu().mean(dim=1)


WRONG = {
    "bag_mean": [bag_mean_with_padding, bag_mean_divides_by_length, bag_mean_nan_when_empty],
    "tfidf": [tfidf_unsmoothed_idf, tfidf_raw_counts, tfidf_not_normalised],
    "conv_max_over_time": [
        conv_weight_flattened_in_the_wrong_order,
        conv_flipped_kernel,
        conv_mean_over_time,
    ],
}
