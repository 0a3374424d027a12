"""Plausible wrong answers to fundamentals/03's exercises: each must make its check fail."""

from __future__ import annotations

import math

import torch
from torch import nn


class LinearPlainTensors(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = torch.empty(out_features, in_features).uniform_(-bound, bound)  # not a Parameter
        self.bias = torch.zeros(out_features)

    def forward(self, x):
        return x @ self.weight.T + self.bias


class LinearInOut(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(in_features, out_features).uniform_(-bound, bound)
        )  # lesson 02's
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        return x @ self.weight + self.bias


class LinearRandn(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))  # std 1: far too large
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        return x @ self.weight.T + self.bias


class LayerNormUnbiased(nn.Module):
    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)  # unbiased: divides by D - 1
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormEpsOutside(LayerNormUnbiased):
    def forward(self, x):
        mean, std = x.mean(-1, keepdim=True), x.std(-1, unbiased=False, keepdim=True)
        return (x - mean) / (std + self.eps) * self.weight + self.bias  # eps added to the std


class LayerNormOverBatch(LayerNormUnbiased):
    def forward(self, x):
        mean, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)  # batch norm's axis
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class BatchNormAlwaysBatchStats(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):  # ignores self.training
        mean, var = x.mean(0), x.var(0, unbiased=False)
        if len(x) == 1:  # eval mode's single sample: the batch statistics are the sample itself
            return (x - mean) / torch.sqrt(var + self.eps)
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(0))
        return (x - mean) / torch.sqrt(var + self.eps)


class BatchNormBiasedRunningVar(BatchNormAlwaysBatchStats):
    def forward(self, x):
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)  # biased, unlike PyTorch
        return (x - mean) / torch.sqrt(var + self.eps)


class BatchNormMomentumReversed(BatchNormAlwaysBatchStats):
    def forward(self, x):
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        with torch.no_grad():  # keeps 10% of the old value instead of 90%
            self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
            self.running_var.mul_(self.momentum).add_((1 - self.momentum) * x.var(0))
        return (x - mean) / torch.sqrt(var + self.eps)


class BatchNormPlainAttributes(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.running_mean = torch.zeros(num_features)  # not a buffer: not saved, not moved
        self.running_var = torch.ones(num_features)

    forward = BatchNormAlwaysBatchStats.forward


class BatchNormRunningStatsTrackGrad(BatchNormAlwaysBatchStats):
    def forward(self, x):
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        mean, var = x.mean(0), x.var(0, unbiased=False)
        m = self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * mean  # no torch.no_grad(): joins the graph
        self.running_var = (1 - m) * self.running_var + m * x.var(0)
        return (x - mean) / torch.sqrt(var + self.eps)


WRONG = {
    "MyLinear": [LinearPlainTensors, LinearInOut, LinearRandn],
    "MyLayerNorm": [LayerNormUnbiased, LayerNormEpsOutside, LayerNormOverBatch],
    "MyBatchNorm1d": [
        BatchNormAlwaysBatchStats, BatchNormBiasedRunningVar, BatchNormMomentumReversed,
        BatchNormPlainAttributes, BatchNormRunningStatsTrackGrad,
    ],
}  # fmt: skip
