"""Plausible wrong answers to fundamentals/01's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def distances_squared(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(dim=-1)  # no square root


def distances_swapped(A, B):
    return ((A[None, :, :] - B[:, None, :]) ** 2).sum(dim=-1).sqrt()  # (M, N), not (N, M)


def distances_wrong_axis(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(dim=1).sqrt()  # summed over B's rows, not features


def one_hot_every_row(y, num_classes):
    out = torch.zeros(len(y), num_classes)
    out[:, y] = 1.0  # sets every label's column in every row
    return out


def one_hot_from_max(y, num_classes):
    out = torch.zeros(len(y), int(y.max()) + 1)  # width from the data, not num_classes
    out[torch.arange(len(y)), y] = 1.0
    return out


def one_hot_int(y, num_classes):
    out = torch.zeros(len(y), num_classes, dtype=torch.long)  # integers, not floats
    out[torch.arange(len(y)), y] = 1
    return out


def jacobian_forward_difference(f, x, eps=1e-6):
    fx = f(x)
    columns = []
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step[i] = eps
        columns.append((f(x + step) - fx) / eps)  # one-sided: error of order eps, not eps**2
    return torch.stack(columns, dim=1)


def jacobian_transposed(f, x, eps=1e-6):
    rows = []
    for i in range(x.numel()):
        step = torch.zeros_like(x)
        step[i] = eps
        rows.append((f(x + step) - f(x - step)) / (2 * eps))
    return torch.stack(rows)  # (n, m): one row per input


def jacobian_in_place(f, x, eps=1e-6):
    columns = []
    for i in range(x.numel()):
        x[i] += eps
        up = f(x)
        x[i] -= 2 * eps
        down = f(x)  # x[i] is left eps below where it was
        columns.append((up - down) / (2 * eps))
    return torch.stack(columns, dim=1)


WRONG = {
    "pairwise_distances": [distances_squared, distances_swapped, distances_wrong_axis],
    "one_hot": [one_hot_every_row, one_hot_from_max, one_hot_int],
    "numerical_jacobian": [jacobian_forward_difference, jacobian_transposed, jacobian_in_place],
}
