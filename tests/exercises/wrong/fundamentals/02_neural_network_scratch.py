"""Plausible wrong answers to fundamentals/02's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def leaky_relu_grad_zero_slope(Z: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    return (Z > 0).to(Z.dtype)  # plain ReLU's derivative


def leaky_relu_grad_of_value(Z: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    return torch.where(Z > 0, Z, slope * Z)  # the function, not its derivative


def bce_naive(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return (-y * torch.log(s) - (1 - y) * torch.log(1 - s)).mean()  # inf once sigmoid rounds to 0 or 1


def bce_sum(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (z.clamp(min=0) + torch.log1p(torch.exp(-z.abs())) - y * z).sum()  # sum, not mean


def linear_backward_transposed(X, W, dZ):
    return dZ @ W, X.T @ dZ, dZ.sum(dim=0)  # W not transposed: a shape error for n_in != n_out


def linear_backward_no_bias_sum(X, W, dZ):
    return dZ @ W.T, X.T @ dZ, dZ.mean(dim=0)  # mean over the batch, not sum


WRONG = {
    "leaky_relu_grad": [leaky_relu_grad_zero_slope, leaky_relu_grad_of_value],
    "bce_with_logits": [bce_naive, bce_sum],
    "linear_backward": [linear_backward_transposed, linear_backward_no_bias_sum],
}
