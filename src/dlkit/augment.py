"""Batched image augmentation: one tensor op for the whole batch, on the batch's own device.

A ``DataLoader`` with per-image transforms spends most of a small-image epoch in Python. Keeping the
whole dataset on the device and augmenting a batch at a time with tensor ops (the idea of Keller
Jordan's cifar10-airbench) costs almost nothing::

    X = flip_lr(X)                   # (B, C, H, W), each image mirrored with probability 1/2
    X = random_translate(X, pad=2)   # each image shifted by up to 2 pixels, reflect-padded
    y_hat = tta_logits(model, X_test, translate=1)  # test-time augmentation: mean over 4 views

Every function takes an optional ``torch.Generator`` (on any device) for repeatable draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["cutout", "flip_lr", "random_translate", "translate", "tta_logits"]


def _draw_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Random numbers are drawn where the generator lives (a CPU generator works for a GPU batch)."""
    return generator.device if generator is not None else x.device


def flip_lr(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image of ``x`` (B, C, H, W) left-right with probability ``p``; returns a new tensor."""
    chosen = torch.rand(len(x), generator=generator, device=_draw_device(x, generator)) < p  # (B,)
    return torch.where(chosen.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def translate(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by ``shifts`` (B, 2) = (dy, dx) in [-pad, pad], filling in by reflection.

    The same as reflect-padding by ``pad`` and cropping the (H, W) window at (pad + dy, pad + dx):
    a gather with per-image row and column indices, so no loop over images.
    """
    B, _, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, C, H + 2 pad, W + 2 pad)
    offsets = shifts.to(x.device, torch.long) + pad  # (B, 2), top-left corner of each crop
    rows = offsets[:, 0:1] + torch.arange(H, device=x.device)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(W, device=x.device)  # (B, W)
    batch = torch.arange(B, device=x.device).view(B, 1, 1)
    # Advanced indices split by the channel slice go first: the result is (B, H, W, C).
    crops = padded[batch, :, rows.view(B, H, 1), cols.view(B, 1, W)]
    return crops.permute(0, 3, 1, 2)  # (B, C, H, W), laid out channels_last


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of ``x`` (B, C, H, W) by a random (dy, dx) in [-pad, pad]^2 (reflect padding)."""
    if pad == 0:
        return x
    shifts = torch.randint(-pad, pad + 1, (len(x), 2), generator=generator, device=_draw_device(x, generator))
    return translate(x, shifts, pad)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square at a random centre of each image (DeVries & Taylor, 2017).

    The centre may lie near the border, so the square can be partly outside the image, as in the paper.
    """
    B, _, H, W = x.shape
    device = _draw_device(x, generator)
    cy = torch.randint(0, H, (B, 1), generator=generator, device=device).to(x.device)  # (B, 1)
    cx = torch.randint(0, W, (B, 1), generator=generator, device=device).to(x.device)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(H, device=x.device)  # (H,)
    cols = torch.arange(W, device=x.device)
    in_rows = (rows >= top) & (rows < top + size)  # (B, H)
    in_cols = (cols >= left) & (cols < left + size)  # (B, W)
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
    return x.masked_fill(hole, 0.0)


@torch.no_grad()
def tta_logits(model: nn.Module, x: torch.Tensor, translate: int = 0, flip: bool = True) -> torch.Tensor:
    """Test-time augmentation: the mean logits over views of ``x`` (B, C, H, W); returns (B, K).

    ``flip`` averages the image and its mirror. ``translate=t`` also averages the views shifted by t
    pixels up-left and down-right (reflect-padded), giving them together the same weight as the
    untranslated views: airbench94's ``tta_level=2`` is ``translate=1``.
    """

    def mirrored(inputs: torch.Tensor) -> torch.Tensor:
        logits = model(inputs)
        return 0.5 * (logits + model(inputs.flip(-1))) if flip else logits

    logits = mirrored(x)
    if translate:
        B = len(x)
        up_left = _shift_all(x, -translate, B)
        down_right = _shift_all(x, translate, B)
        logits = 0.5 * logits + 0.25 * (mirrored(up_left) + mirrored(down_right))
    return logits


def _shift_all(x: torch.Tensor, amount: int, B: int) -> torch.Tensor:
    shifts = torch.full((B, 2), amount, dtype=torch.long, device=x.device)
    return translate(x, shifts, abs(amount)).contiguous(memory_format=torch.channels_last)
