"""Small networks that more than one lesson builds: written once here, explained in the lessons.

    model = make_cnn(1, 10, widths=(32, 64, 128), image_size=28, dropout=0.2)  # flatten head
    model = make_cnn(3, 10, widths=(16, 32, 64, 64), pools=3)                # global max-pool head

Computer vision lesson 01 takes :func:`make_cnn` apart (output sizes, receptive field, parameters);
lesson 03 trains it with and without augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import nn

__all__ = ["conv_block", "make_cnn"]


def conv_block(c_in: int, c_out: int, *, pool: bool = True) -> nn.Sequential:
    """3x3 conv (padding 1: the size stays), BatchNorm, ReLU and, with ``pool``, a 2x2 max pool (halves).

    The conv has no bias: the BatchNorm right after it subtracts the mean and adds its own shift.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


def make_cnn(
    in_channels: int,
    num_classes: int,
    widths: Sequence[int] = (32, 64, 128),
    *,
    image_size: int | None = None,
    pools: int | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """(B, in_channels, H, W) -> (B, num_classes): one :func:`conv_block` per width, then a linear head.

    The first ``pools`` blocks (default: all) end with a 2x2 max pool. With ``image_size`` (square
    images) the head flattens the last feature map and reads every position; without it the head
    takes each channel's maximum over all positions (global max pooling), so any image size works.
    """
    pools = len(widths) if pools is None else pools
    blocks = [
        conv_block(c_in, c_out, pool=i < pools)
        for i, (c_in, c_out) in enumerate(pairwise([in_channels, *widths]))
    ]
    if image_size is None:
        head: list[nn.Module] = [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
        num_features = widths[-1]
    else:
        side = image_size
        for _ in range(pools):
            side //= 2  # a 2x2 pool with stride 2 floors odd sizes: 7 -> 3
        if side < 1:
            raise ValueError(f"{pools} pools leave nothing of a {image_size} x {image_size} image")
        head, num_features = [nn.Flatten(), nn.Dropout(dropout)], widths[-1] * side * side
    return nn.Sequential(*blocks, *head, nn.Linear(num_features, num_classes))
