"""Plausible wrong answers to computer_vision/03's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hflip_vertical(images, masks, p, generator):
    flip = torch.rand(len(images), generator=generator) < p
    return (
        torch.where(flip[:, None, None, None], images.flip(-2), images),  # upside down
        torch.where(flip[:, None, None], masks.flip(-2), masks),
    )


def hflip_one_coin_for_the_batch(images, masks, p, generator):
    if torch.rand(1, generator=generator).item() < p:
        return images.flip(-1), masks.flip(-1)
    return images, masks


def hflip_masks_with_their_own_coins(images, masks, p, generator):
    flip = torch.rand(len(images), generator=generator) < p
    flip_masks = torch.rand(len(images), generator=generator) < p  # a second draw: out of step
    return (
        torch.where(flip[:, None, None, None], images.flip(-1), images),
        torch.where(flip_masks[:, None, None], masks.flip(-1), masks),
    )


def mixup_labels_not_mixed(x, y, num_classes, lam, perm):
    return lam * x + (1 - lam) * x[perm], F.one_hot(y, num_classes).to(x.dtype)


def mixup_lam_swapped(x, y, num_classes, lam, perm):
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return (1 - lam) * x + lam * x[perm], lam * one_hot + (1 - lam) * one_hot[perm]


def cutmix_lam_is_the_pasted_share(x, y, num_classes, box, perm):
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
    lam = (x2 - x1) * (y2 - y1) / (x.shape[-2] * x.shape[-1])  # the pasted share, not the kept one
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return out, lam * one_hot + (1 - lam) * one_hot[perm]


def cutmix_x_on_rows(x, y, num_classes, box, perm):
    x1, y1, x2, y2 = box
    out = x.clone()
    out[..., x1:x2, y1:y2] = x[perm][..., x1:x2, y1:y2]  # x indexes rows: height and width mixed up
    lam = 1 - (x2 - x1) * (y2 - y1) / (x.shape[-2] * x.shape[-1])
    one_hot = F.one_hot(y, num_classes).to(x.dtype)
    return out, lam * one_hot + (1 - lam) * one_hot[perm]


WRONG = {
    "random_hflip": [hflip_vertical, hflip_one_coin_for_the_batch, hflip_masks_with_their_own_coins],
    "mixup": [mixup_labels_not_mixed, mixup_lam_swapped],
    "cutmix": [cutmix_lam_is_the_pasted_share, cutmix_x_on_rows],
}
