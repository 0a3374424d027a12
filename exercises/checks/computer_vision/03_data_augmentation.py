"""Checks for computer_vision/03 (augmentation): torchvision.transforms.v2's MixUp and CutMix are oracles."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from dlkit.exercises import expect, expect_tensor


def check_random_hflip(random_hflip) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, 3, 5, 7, generator=g, dtype=torch.float64)
    masks = (images[:, 0] > 0).long()  # (B, H, W): a mask that belongs to its image
    out, out_masks = random_hflip(images.clone(), masks.clone(), 0.5, torch.Generator().manual_seed(3))
    expect(
        tuple(out.shape) == tuple(images.shape) and tuple(out_masks.shape) == tuple(masks.shape),
        f"return images {tuple(images.shape)} and masks {tuple(masks.shape)} of the input shapes, got "
        f"{tuple(out.shape)} and {tuple(out_masks.shape)}",
    )
    flipped = []
    for i in range(len(images)):
        kept, mirrored = torch.equal(out[i], images[i]), torch.equal(out[i], images[i].flip(-1))
        expect(
            kept or mirrored,
            f"image {i} is neither the input nor its left-right mirror (flip the last "
            "dimension, the width, of one whole image)",
        )
        flipped.append(mirrored)
        expected_mask = masks[i].flip(-1) if mirrored else masks[i]
        expect(
            torch.equal(out_masks[i], expected_mask),
            f"sample {i}: the mask was {'not ' if mirrored else ''}flipped while its image was"
            f"{'' if mirrored else ' not'}: flip both with the same coin",
        )
    coins = (torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5).tolist()
    expect(
        flipped == coins,
        f"flipped samples {[i for i, f in enumerate(flipped) if f]}; expected "
        f"{[i for i, c in enumerate(coins) if c]}: draw one coin per sample, "
        "`torch.rand(len(images), generator=generator) < p`",
    )
    for p in (0.0, 1.0):
        out, _ = random_hflip(images.clone(), masks.clone(), p, torch.Generator().manual_seed(4))
        expect(
            torch.equal(out, images.flip(-1) if p else images),
            f"with p={p} {'every' if p else 'no'} image should be flipped",
        )


def _batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 3, 8, 10, generator=g, dtype=torch.float64)
    return x, torch.tensor([0, 1, 2, 3, 0, 1])  # y[i] != y[i - 1]: every label mix shows lam


def check_mixup(mixup) -> None:
    for seed in range(3):
        x, y = _batch(seed)
        torch.manual_seed(seed)
        x_ref, y_ref = v2.MixUp(alpha=1.0, num_classes=4)(x, y)  # mixes each sample with the one before
        lam = float(y_ref[0, y[0]])
        perm = torch.arange(len(x)).roll(1)
        x_mix, y_mix = mixup(x, y, 4, lam, perm)
        what = f"with lam={lam:.3f}"
        expect_tensor(x_mix, x_ref, f"the mixed images {what}", reference="torchvision.transforms.v2.MixUp")
        expect_tensor(
            y_mix,
            y_ref,
            f"the mixed labels (B, num_classes) {what}",
            reference="torchvision.transforms.v2.MixUp",
        )


def check_cutmix(cutmix) -> None:
    for seed in range(4):
        x, y = _batch(seed)
        torch.manual_seed(seed)
        x_ref, y_ref = v2.CutMix(alpha=1.0, num_classes=4)(x, y)
        pasted = (x_ref != x).any(0).any(0)  # (H, W): where CutMix pasted the other image
        rows, cols = pasted.any(1).nonzero().squeeze(1), pasted.any(0).nonzero().squeeze(1)
        box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
        x_mix, y_mix = cutmix(x, y, 4, box, torch.arange(len(x)).roll(1))
        what = f"for box (x1, y1, x2, y2) = {box} in {x.shape[-2]}x{x.shape[-1]} images"
        expect_tensor(x_mix, x_ref, f"the mixed images {what}", reference="torchvision.transforms.v2.CutMix")
        expect_tensor(
            y_mix,
            y_ref,
            f"the mixed labels {what} (lam = the share of each image kept)",
            reference="torchvision.transforms.v2.CutMix",
        )
