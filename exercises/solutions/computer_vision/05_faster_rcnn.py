"""Reference solutions to computer_vision/05's exercises (Faster R-CNN)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def match_anchors(iou: torch.Tensor, high: float, low: float) -> torch.Tensor:
    values, best = iou.max(dim=0)  # (A,) each anchor's best ground-truth box
    matches = best.clone()
    matches[values < low] = -1
    matches[(values >= low) & (values < high)] = -2
    best_of_each_gt = iou.max(dim=1).values  # (G,)
    anchors = torch.nonzero(iou == best_of_each_gt[:, None])[:, 1]  # ties included
    matches[anchors] = best[anchors]
    return matches


def decode_boxes(
    offsets: torch.Tensor, anchors: torch.Tensor, image_size: tuple[int, int], weights=(1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    dx, dy, dw, dh = (offsets / offsets.new_tensor(weights)).unbind(1)
    limit = math.log(1000.0 / 16)
    dw, dh = dw.clamp(max=limit), dh.clamp(max=limit)
    cx, cy, w, h = cx + dx * widths, cy + dy * heights, widths * dw.exp(), heights * dh.exp()
    H, W = image_size
    x1, x2 = (cx - 0.5 * w).clamp(0, W), (cx + 0.5 * w).clamp(0, W)
    y1, y2 = (cy - 0.5 * h).clamp(0, H), (cy + 0.5 * h).clamp(0, H)
    return torch.stack([x1, y1, x2, y2], dim=1)


def rpn_loss(
    objectness: torch.Tensor, offsets: torch.Tensor, matches: torch.Tensor, target_offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    used = matches != -2  # ignored anchors take no part
    positive = matches >= 0
    labels = positive.to(objectness.dtype)
    objectness_loss = F.binary_cross_entropy_with_logits(objectness[used], labels[used])
    box_loss = F.smooth_l1_loss(offsets[positive], target_offsets[positive], beta=1 / 9, reduction="sum")
    return objectness_loss, box_loss / used.sum()
