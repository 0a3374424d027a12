"""Plausible wrong answers to computer_vision/01's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def shape_ignores_dilation(size, kernel_size, stride=1, padding=0, dilation=1):
    (kh, kw), (sh, sw), (ph, pw) = (_pair(v) for v in (kernel_size, stride, padding))
    return (size[0] + 2 * ph - kh) // sh + 1, (size[1] + 2 * pw - kw) // sw + 1


def shape_height_and_width_swapped(size, kernel_size, stride=1, padding=0, dilation=1):
    (kw, kh), (sw, sh), (pw, ph), (dw, dh) = (_pair(v) for v in (kernel_size, stride, padding, dilation))
    h, w = size
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def im2col_output_transposed(x, weight, bias=None, stride=1, padding=0):
    B, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    out = weight.reshape(C_out, -1) @ F.unfold(x, (kh, kw), padding=padding, stride=stride)
    if bias is not None:
        out = out + bias[:, None]
    H_out, W_out = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    return out.reshape(B, C_out, W_out, H_out).transpose(2, 3)  # W and H swapped in the reshape


def im2col_weight_channels_last(x, weight, bias=None, stride=1, padding=0):
    B, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    w = weight.permute(0, 2, 3, 1).reshape(C_out, -1)  # (kh, kw, C) order: unfold's is (C, kh, kw)
    out = w @ F.unfold(x, (kh, kw), padding=padding, stride=stride)
    if bias is not None:
        out = out + bias[:, None]
    return out.reshape(B, C_out, (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1)


def _bn(x, weight, bias, running_mean, running_var, momentum, eps, dims, unbiased_norm, unbiased_running):
    mean, var = x.mean(dim=dims), x.var(dim=dims, unbiased=unbiased_norm)
    y = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + eps) * weight[:, None, None]
    y = y + bias[:, None, None]
    n = x.numel() // x.shape[1]
    run_var = x.var(dim=dims, unbiased=False) * (n / (n - 1) if unbiased_running else 1.0)
    return (
        y,
        (1 - momentum) * running_mean + momentum * mean,
        (1 - momentum) * running_var + momentum * run_var,
    )


def bn_unbiased_variance(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    return _bn(x, weight, bias, running_mean, running_var, momentum, eps, (0, 2, 3), True, True)


def bn_biased_running_var(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    return _bn(x, weight, bias, running_mean, running_var, momentum, eps, (0, 2, 3), False, False)


def bn_per_pixel_statistics(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)  # (C, H, W): statistics over the batch only
    y = (x - mean) / torch.sqrt(var + eps) * weight[:, None, None] + bias[:, None, None]
    n = x.numel() // x.shape[1]
    m, v = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False) * n / (n - 1)
    return y, (1 - momentum) * running_mean + momentum * m, (1 - momentum) * running_var + momentum * v


WRONG = {
    "conv_output_shape": [shape_ignores_dilation, shape_height_and_width_swapped],
    "conv2d_im2col": [im2col_output_transposed, im2col_weight_channels_last],
    "batch_norm2d_train": [bn_unbiased_variance, bn_biased_running_var, bn_per_pixel_statistics],
}
