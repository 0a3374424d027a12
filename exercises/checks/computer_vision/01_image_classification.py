"""Checks for computer_vision/01 (image classification): nn.Conv2d, F.conv2d, nn.BatchNorm2d are oracles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import expect, expect_tensor

# (input size, kernel, stride, padding, dilation): square and not, dilated, strided
_SHAPES = [
    ((28, 28), 3, 1, 0, 1),
    ((28, 28), 3, 2, 1, 1),
    ((32, 20), 5, 2, 2, 1),
    ((17, 23), (3, 5), (2, 1), (1, 2), 1),
    ((30, 30), 3, 1, 2, 2),
    ((31, 40), (3, 2), (3, 2), (0, 1), (2, 3)),
    ((9, 9), 7, 3, 3, 1),
]


def check_conv_output_shape(conv_output_shape) -> None:
    for size, k, s, p, d in _SHAPES:
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
        with torch.no_grad():
            expected = tuple(conv(torch.zeros(1, 1, *size)).shape[-2:])
        got = conv_output_shape(size, k, s, p, d)
        what = f"conv_output_shape({size}, kernel_size={k}, stride={s}, padding={p}, dilation={d})"
        expect(
            isinstance(got, tuple) and len(got) == 2,
            f"{what} should return a tuple (H_out, W_out), got {got!r}",
        )
        expect(
            tuple(int(v) for v in got) == expected,
            f"{what} is {tuple(got)}; nn.Conv2d gives {expected}"
            + (" (a dilated kernel spans dilation * (k - 1) + 1 pixels)" if d != 1 else ""),
        )


def check_conv2d_im2col(conv2d_im2col) -> None:
    g = torch.Generator().manual_seed(0)
    for (B, C_in, H, W), (C_out, kh, kw), stride, padding in [
        ((2, 3, 9, 13), (4, 3, 3), 1, 1),
        ((1, 2, 11, 7), (5, 2, 4), 2, 0),
        ((3, 1, 8, 10), (2, 3, 3), 2, 2),
    ]:
        x = torch.randn(B, C_in, H, W, generator=g, dtype=torch.float64)
        weight = torch.randn(C_out, C_in, kh, kw, generator=g, dtype=torch.float64)
        bias = torch.randn(C_out, generator=g, dtype=torch.float64)
        what = f"conv2d_im2col(x {tuple(x.shape)}, weight {tuple(weight.shape)}, {stride=}, {padding=})"
        expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
        expect_tensor(conv2d_im2col(x, weight, bias, stride, padding), expected, what, reference="F.conv2d")
        expected = F.conv2d(x, weight, None, stride=stride, padding=padding)
        expect_tensor(
            conv2d_im2col(x, weight, None, stride, padding),
            expected,
            what + " without bias",
            reference="F.conv2d",
        )


def check_batch_norm2d_train(batch_norm2d_train) -> None:
    g = torch.Generator().manual_seed(1)
    bn = nn.BatchNorm2d(3, momentum=0.2, eps=1e-3).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(3, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(3, generator=g))
        bn.running_mean.copy_(torch.randn(3, generator=g))
        bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(4, 3, 5, 6, generator=g, dtype=torch.float64) * 2 + 1
    with torch.no_grad():
        expected = bn(x)
        y, new_mean, new_var = batch_norm2d_train(
            x, bn.weight.detach(), bn.bias.detach(), mean0.clone(), var0.clone(), 0.2, 1e-3
        )
    expect_tensor(
        y,
        expected,
        "the normalised output y (per channel: statistics over batch, height and width)",
        reference="nn.BatchNorm2d in train mode",
    )
    expect_tensor(new_mean, bn.running_mean, "the new running_mean", reference="nn.BatchNorm2d")
    expect_tensor(
        new_var,
        bn.running_var,
        "the new running_var (BatchNorm's running average uses the unbiased variance, n / (n - 1))",
        reference="nn.BatchNorm2d",
    )
