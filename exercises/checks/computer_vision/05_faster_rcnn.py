"""Checks for computer_vision/05 (Faster R-CNN): torchvision's Matcher, BoxCoder, clip_boxes_to_image, RPN."""

from __future__ import annotations

import torch
from torchvision import ops
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from dlkit.exercises import expect, expect_tensor


def _expect_matches(got, expected, what: str) -> None:
    expect(
        isinstance(got, torch.Tensor) and not got.dtype.is_floating_point and got.shape == expected.shape,
        f"{what} should be an int64 tensor of shape {tuple(expected.shape)} (one entry per anchor), got "
        f"{getattr(got, 'dtype', type(got).__name__)} {tuple(getattr(got, 'shape', ()))}",
    )
    bad = (got != expected).nonzero().squeeze(1)
    if len(bad):
        i = int(bad[0])
        meaning = {-1: "-1 (background)", -2: "-2 (ignored)"}
        e, g = int(expected[i]), int(got[i])
        raise_msg = (
            f"{what}: anchor {i} got {meaning.get(g, f'box {g}')}, expected {meaning.get(e, f'box {e}')} "
            f"({len(bad)} of {len(got)} anchors differ; torchvision's Matcher; IoU >= high is a match, "
            "and each box's best anchors, ties included, match too)"
        )
        expect(False, raise_msg)


def check_match_anchors(match_anchors) -> None:
    iou = torch.tensor(
        [  # 3 boxes x 6 anchors: an IoU exactly at each threshold, and a box whose best anchors tie
            [0.70, 0.50, 0.10, 0.00, 0.00, 0.80],
            [0.00, 0.69, 0.30, 0.29, 0.00, 0.00],
            [0.00, 0.00, 0.00, 0.25, 0.25, 0.10],
        ],
        dtype=torch.float64,
    )
    _expect_matches(
        match_anchors(iou.clone(), 0.7, 0.3),
        Matcher(0.7, 0.3, True)(iou.clone()),
        "match_anchors on a small IoU matrix (high=0.7, low=0.3)",
    )
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(200, 2, generator=g) * 80
    anchors = torch.cat([corner, corner + 8 + torch.rand(200, 2, generator=g) * 30], 1)
    gt = anchors[torch.randperm(200, generator=g)[:5]] + torch.randn(5, 4, generator=g) * 3
    iou = ops.box_iou(gt, anchors)  # (5, 200)
    for high, low in [(0.7, 0.3), (0.5, 0.5)]:
        _expect_matches(
            match_anchors(iou.clone(), high, low),
            Matcher(high, low, True)(iou.clone()),
            f"match_anchors(iou of 5 boxes x 200 anchors, high={high}, low={low})",
        )


def check_decode_boxes(decode_boxes) -> None:
    g = torch.Generator().manual_seed(1)
    corner = torch.rand(40, 2, generator=g, dtype=torch.float64) * torch.tensor(
        [180.0, 100.0], dtype=torch.float64
    )
    anchors = torch.cat([corner, corner + 2 + torch.rand(40, 2, generator=g, dtype=torch.float64) * 40], 1)
    offsets = torch.randn(40, 4, generator=g, dtype=torch.float64) * 2
    offsets[:4, 2:] = 25.0  # exp(25 / 5): far too large; torchvision clamps dw, dh at log(1000 / 16)
    anchors[:4] = torch.tensor([99.0, 59.0, 101.0, 61.0], dtype=torch.float64)  # small anchors mid-image
    image_size = (120, 200)  # (H, W): not square
    for weights in ((10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)):
        expected = ops.clip_boxes_to_image(BoxCoder(weights).decode_single(offsets, anchors), image_size)
        got = decode_boxes(offsets.clone(), anchors.clone(), image_size, weights)
        expect_tensor(
            got,
            expected,
            f"decode_boxes(weights={weights}) in a {image_size[0]}x{image_size[1]} (H x W) image",
            reference="BoxCoder.decode_single + ops.clip_boxes_to_image",
        )


def _rpn() -> RegionProposalNetwork:
    """torchvision's RPN, with a sampling budget larger than any test: it keeps every labelled anchor."""
    top_n = {"training": 100, "testing": 100}
    generator = AnchorGenerator(((32,),), ((1.0,),))
    return RegionProposalNetwork(generator, RPNHead(1, 1), 0.7, 0.3, 100_000, 0.5, top_n, top_n, 0.7)


def check_rpn_loss(rpn_loss) -> None:
    g = torch.Generator().manual_seed(2)
    A = 300
    objectness = torch.randn(A, generator=g, dtype=torch.float64) * 2
    offsets = (
        torch.randn(A, 4, generator=g, dtype=torch.float64) * 0.3
    )  # many residuals under 1: beta matters
    target_offsets = torch.randn(A, 4, generator=g, dtype=torch.float64) * 0.3
    matches = torch.randint(-2, 4, (A,), generator=g)  # -2 ignored, -1 background, 0..3 a box
    labels = torch.where(matches >= 0, 1.0, torch.where(matches == -1, 0.0, -1.0)).to(torch.float64)
    torch.manual_seed(0)
    expected = _rpn().compute_loss(objectness, offsets, [labels], [target_offsets])
    got = rpn_loss(objectness, offsets, matches, target_offsets)
    expect(isinstance(got, tuple | list) and len(got) == 2, "return two losses: (objectness_loss, box_loss)")
    expect_tensor(
        torch.as_tensor(got[0]).reshape(()),
        expected[0],
        "the objectness loss (BCE on logits, mean over anchors that are not ignored)",
        reference="torchvision's RegionProposalNetwork.compute_loss",
    )
    expect_tensor(
        torch.as_tensor(got[1]).reshape(()),
        expected[1],
        "the box loss (smooth L1, beta=1/9, summed over positive anchors, / the anchors used)",
        reference="torchvision's RegionProposalNetwork.compute_loss",
    )
