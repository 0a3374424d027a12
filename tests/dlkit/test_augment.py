"""dlkit.augment: each batched op equals the per-image PyTorch operation it stands for."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.augment import cutout, flip_lr, random_translate, translate, tta_logits


def _images(B: int = 8, C: int = 3, H: int = 6, W: int = 7) -> torch.Tensor:
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(0))


def test_flip_lr_flips_exactly_the_chosen_images() -> None:
    x = _images(64)
    y = flip_lr(x, generator=torch.Generator().manual_seed(1))
    chosen = torch.rand(64, generator=torch.Generator().manual_seed(1)) < 0.5  # the same draw
    assert 10 < int(chosen.sum()) < 54
    torch.testing.assert_close(y[chosen], torch.flip(x[chosen], dims=[3]))
    torch.testing.assert_close(y[~chosen], x[~chosen])
    torch.testing.assert_close(flip_lr(x, p=1.0), torch.flip(x, dims=[3]))
    torch.testing.assert_close(flip_lr(x, p=0.0), x)


def test_translate_equals_reflect_pad_then_crop() -> None:
    x, pad = _images(), 2
    shifts = torch.randint(-pad, pad + 1, (len(x), 2), generator=torch.Generator().manual_seed(2))
    y = translate(x, shifts, pad)
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    for i, (dy, dx) in enumerate(shifts.tolist()):
        expected = padded[i, :, pad + dy : pad + dy + x.shape[2], pad + dx : pad + dx + x.shape[3]]
        torch.testing.assert_close(y[i], expected)
    torch.testing.assert_close(translate(x, torch.zeros(len(x), 2, dtype=torch.long), pad), x)


def test_random_translate_uses_the_generator_and_stays_in_range() -> None:
    x, pad = _images(32), 3
    a = random_translate(x, pad, generator=torch.Generator().manual_seed(3))
    b = random_translate(x, pad, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    shifts = torch.randint(-pad, pad + 1, (32, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, translate(x, shifts, pad))
    assert not torch.equal(a, random_translate(x, pad, generator=torch.Generator().manual_seed(4)))
    assert random_translate(x, 0) is x


def test_cutout_zeroes_one_square_per_image() -> None:
    x = _images(16, H=12, W=12) + 1.0  # no zero pixels before cutout
    y = cutout(x, 4, generator=torch.Generator().manual_seed(5))
    holes = (y == 0).all(dim=1)  # (B, H, W): zeroed in every channel
    assert ((y == 0) == holes.unsqueeze(1)).all()
    counts = holes.sum(dim=(1, 2))
    assert (counts <= 16).all() and (counts > 0).all() and (counts == 16).any()
    for hole in holes:  # each hole is a rectangle: its bounding box is full
        rows, cols = hole.any(1).nonzero(), hole.any(0).nonzero()
        assert hole.sum() == len(rows) * len(cols)
    torch.testing.assert_close(y, cutout(x, 4, generator=torch.Generator().manual_seed(5)))


def test_tta_logits_is_the_mean_over_views() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5)).eval()
    x = _images()
    model(x)  # materialise the lazy layer
    flip = tta_logits(model, x)
    torch.testing.assert_close(flip, (model(x) + model(x.flip(-1))) / 2)
    torch.testing.assert_close(tta_logits(model, x, flip=False), model(x))
    views = [F.pad(x, (1,) * 4, mode="reflect")[:, :, r : r + 6, r : r + 7] for r in (0, 2)]
    mirrored = [(model(v) + model(v.flip(-1))) / 2 for v in views]
    expected = 0.5 * flip + 0.25 * (mirrored[0] + mirrored[1])
    torch.testing.assert_close(tta_logits(model, x, translate=1), expected)


def test_flip_tta_changes_nothing_for_mirror_symmetric_images() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 6, 5)).eval()
    half = _images(W=4)
    x = torch.cat([half, half.flip(-1)], dim=-1)  # (B, 3, 6, 8), equal to its own mirror image
    torch.testing.assert_close(tta_logits(model, x), model(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shapes_dtypes_and_devices_are_kept(dtype: torch.dtype) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = _images(4, C=1, H=28, W=28).to(device, dtype)
        for y in (flip_lr(x), random_translate(x, 2), cutout(x, 8)):
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
        # A CPU generator drives a batch on any device.
        y = random_translate(x, 2, generator=torch.Generator().manual_seed(0))
        assert y.device == x.device
