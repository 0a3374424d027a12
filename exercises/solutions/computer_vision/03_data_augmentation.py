"""Reference solutions to computer_vision/03's exercises (data augmentation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_hflip(
    images: torch.Tensor, masks: torch.Tensor, p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    flip = torch.rand(len(images), generator=generator) < p  # (B,) one coin per sample
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    masks = torch.where(flip[:, None, None], masks.flip(-1), masks)
    return images, masks


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], lam * one_hot + (1 - lam) * one_hot[perm]


def cutmix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, box: tuple[int, int, int, int], perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
    lam = 1 - (x2 - x1) * (y2 - y1) / (x.shape[-2] * x.shape[-1])  # the share of the image kept
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return out, lam * one_hot + (1 - lam) * one_hot[perm]
