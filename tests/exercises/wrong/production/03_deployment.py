"""Plausible wrong answers to production/03's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def group_requests_from_previous(arrivals: list[float], max_batch: int, max_wait: float) -> list[list[int]]:
    batches: list[list[int]] = []
    for i, t in enumerate(arrivals):  # waits max_wait after the LAST request: a trickle never closes
        if batches and len(batches[-1]) < max_batch and t <= arrivals[batches[-1][-1]] + max_wait:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def group_requests_strict_deadline(arrivals: list[float], max_batch: int, max_wait: float) -> list[list[int]]:
    batches: list[list[int]] = []
    for i, t in enumerate(arrivals):
        if batches and len(batches[-1]) < max_batch and t < arrivals[batches[-1][0]] + max_wait:  # < not <=
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def group_requests_no_cap(arrivals: list[float], max_batch: int, max_wait: float) -> list[list[int]]:
    batches: list[list[int]] = []
    for i, t in enumerate(arrivals):
        if batches and t <= arrivals[batches[-1][0]] + max_wait:  # never closes a full batch
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def max_export_diff_no_eval(model, exported, inputs: torch.Tensor, batch_size: int = 64) -> float:
    with torch.no_grad():  # dropout still on: a random difference
        return max((exported(x) - model(x)).abs().max().item() for x in inputs.split(batch_size))


def max_export_diff_signed(model, exported, inputs: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    with torch.no_grad():  # no abs: a negative difference is never the largest
        return max((exported(x) - model(x)).max().item() for x in inputs.split(batch_size))


def max_export_diff_first_batch(model, exported, inputs: torch.Tensor, batch_size: int = 64) -> float:
    model.eval()
    with torch.no_grad():
        x = inputs[:batch_size]  # checks one batch only
        return (exported(x) - model(x)).abs().max().item()


WRONG = {
    "group_requests": [group_requests_from_previous, group_requests_strict_deadline, group_requests_no_cap],
    "max_export_diff": [max_export_diff_no_eval, max_export_diff_signed, max_export_diff_first_batch],
}
