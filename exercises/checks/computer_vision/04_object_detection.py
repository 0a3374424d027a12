"""Checks for computer_vision/04 (object detection): torchvision.ops is the oracle."""

from __future__ import annotations

import torch
from torchvision import ops

from dlkit.exercises import expect, expect_tensor


def _boxes(n: int, g: torch.Generator, size: float) -> torch.Tensor:
    corner = torch.rand(n, 2, generator=g, dtype=torch.float64) * size * 0.7
    return torch.cat(
        [corner, corner + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * size * 0.3], 1
    )


def check_generalized_box_iou(generalized_box_iou) -> None:
    g = torch.Generator().manual_seed(0)
    a, b = _boxes(7, g, 100.0), _boxes(5, g, 100.0)  # many disjoint pairs
    expect_tensor(
        generalized_box_iou(a, b),
        ops.generalized_box_iou(a, b),
        "generalized_box_iou(a, b), (N, M)",
        reference="torchvision.ops.generalized_box_iou",
    )
    a = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 4.0, 4.0]], dtype=torch.float64
    )
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]], dtype=torch.float64)
    expect_tensor(
        generalized_box_iou(a, b),
        ops.generalized_box_iou(a, b),
        "generalized_box_iou of an identical box (1), a disjoint one and one inside another",
        reference="torchvision.ops.generalized_box_iou",
    )


def check_postprocess_detections(postprocess_detections) -> None:
    g = torch.Generator().manual_seed(1)
    boxes = _boxes(300, g, 60.0).float()  # crowded: many overlaps
    scores, labels = torch.rand(300, generator=g), torch.randint(0, 3, (300,), generator=g)
    for score_threshold, iou_threshold, max_detections in [(0.3, 0.5, 1000), (0.3, 0.5, 15), (0.05, 0.3, 40)]:
        what = (
            f"postprocess_detections(score_threshold={score_threshold}, iou_threshold={iou_threshold}, "
            f"max_detections={max_detections})"
        )
        candidates = torch.nonzero(scores > score_threshold).squeeze(1)
        keep = ops.batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou_threshold)
        expected = candidates[keep][:max_detections]
        got = postprocess_detections(boxes, scores, labels, score_threshold, iou_threshold, max_detections)
        expect(
            isinstance(got, torch.Tensor) and not got.dtype.is_floating_point,
            f"{what} should return a tensor of indices (int64), got {type(got).__name__}",
        )
        expect(
            got.dim() == 1 and len(got) > 0 and int(got.max()) < len(boxes),
            f"{what} should return indices into the input boxes (before filtering by score)",
        )
        expect(
            bool((scores[got] > score_threshold).all()),
            f"{what} kept boxes scored at most the threshold "
            "(return indices into the input boxes, not into the ones left after the score filter)",
        )
        if len(got) == len(expected) and set(got.tolist()) == set(expected.tolist()):
            expect(torch.equal(got, expected), f"{what}: the right boxes, but sort them by score, best first")
        kept_set, expected_set = set(got.tolist()), set(expected.tolist())
        expect(
            kept_set == expected_set,
            f"{what} keeps {len(got)} boxes, expected {len(expected)} ({len(kept_set - expected_set)} extra, "
            f"{len(expected_set - kept_set)} missing; NMS per class, then the best max_detections)",
        )


def check_focal_loss(focal_loss) -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    targets = (torch.rand(6, 7, generator=g) < 0.2).to(torch.float64)  # mostly empty cells, as in a grid
    for alpha, gamma in [(0.25, 2.0), (0.5, 1.0), (0.9, 0.0)]:
        expected = ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction="none")
        expect_tensor(
            focal_loss(logits, targets, alpha, gamma),
            expected,
            f"focal_loss(alpha={alpha}, gamma={gamma}), elementwise",
            reference="torchvision.ops.sigmoid_focal_loss",
        )
    logits = torch.tensor([40.0, -40.0, 40.0, -40.0, 0.0])  # float32: sigmoid rounds to exactly 0 or 1
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    expect_tensor(
        focal_loss(logits, targets, 0.25, 2.0),
        ops.sigmoid_focal_loss(logits, targets, 0.25, 2.0, reduction="none"),
        "focal_loss for logits of +-40 in float32 (take the cross-entropy from the logits: "
        "F.binary_cross_entropy_with_logits, not log(sigmoid))",
        reference="torchvision.ops.sigmoid_focal_loss",
    )
