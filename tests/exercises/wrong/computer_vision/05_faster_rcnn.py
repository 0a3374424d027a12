"""Plausible wrong answers to computer_vision/05's exercises: each must make its check fail."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _match(iou, high, low, low_quality="ties", strict=False):
    values, best = iou.max(dim=0)
    matches = best.clone()
    matches[values < low] = -1
    matches[(values >= low) & ((values <= high) if strict else (values < high))] = -2
    if low_quality == "ties":
        anchors = torch.nonzero(iou == iou.max(dim=1).values[:, None])[:, 1]
        matches[anchors] = best[anchors]
    elif low_quality == "argmax":
        anchors = iou.argmax(dim=1)  # one anchor per box: ties dropped
        matches[anchors] = best[anchors]
    return matches


def match_without_low_quality(iou, high, low):
    return _match(iou, high, low, low_quality=None)  # a box no anchor reaches `high` for gets none


def match_best_anchor_without_ties(iou, high, low):
    return _match(iou, high, low, low_quality="argmax")


def match_strictly_above_high(iou, high, low):
    return _match(iou, high, low, strict=True)  # IoU == high is not a match


def _decode(offsets, anchors, image_size, weights, clamp="after", swap=False):
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    limit = math.log(1000.0 / 16)
    if clamp == "before":
        offsets = torch.cat([offsets[:, :2], offsets[:, 2:].clamp(max=limit)], 1)
    dx, dy, dw, dh = (offsets / offsets.new_tensor(weights)).unbind(1)
    if clamp == "after":
        dw, dh = dw.clamp(max=limit), dh.clamp(max=limit)
    cx, cy, w, h = cx + dx * widths, cy + dy * heights, widths * dw.exp(), heights * dh.exp()
    H, W = image_size[::-1] if swap else image_size
    x1, x2 = (cx - 0.5 * w).clamp(0, W), (cx + 0.5 * w).clamp(0, W)
    y1, y2 = (cy - 0.5 * h).clamp(0, H), (cy + 0.5 * h).clamp(0, H)
    return torch.stack([x1, y1, x2, y2], dim=1)


def decode_without_clamp(offsets, anchors, image_size, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(offsets, anchors, image_size, weights, clamp=None)


def decode_clamp_before_weights(offsets, anchors, image_size, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(offsets, anchors, image_size, weights, clamp="before")


def decode_clip_height_and_width_swapped(offsets, anchors, image_size, weights=(1.0, 1.0, 1.0, 1.0)):
    return _decode(offsets, anchors, image_size, weights, swap=True)


WRONG = {
    "match_anchors": [match_without_low_quality, match_best_anchor_without_ties, match_strictly_above_high],
    "decode_boxes": [decode_without_clamp, decode_clamp_before_weights, decode_clip_height_and_width_swapped],
}


def _rpn_loss(objectness, offsets, matches, target_offsets, *, used=None, boxes=None, per=None, beta=1 / 9):
    used = matches != -2 if used is None else used
    positive = matches >= 0 if boxes is None else boxes
    labels = (matches >= 0).to(objectness.dtype)
    objectness_loss = F.binary_cross_entropy_with_logits(objectness[used], labels[used])
    box_loss = F.smooth_l1_loss(offsets[positive], target_offsets[positive], beta=beta, reduction="sum")
    return objectness_loss, box_loss / (used.sum() if per is None else per)


def rpn_loss_ignored_anchors_as_background(objectness, offsets, matches, target_offsets):
    return _rpn_loss(
        objectness, offsets, matches, target_offsets, used=torch.ones_like(matches, dtype=torch.bool)
    )


def rpn_loss_box_loss_per_positive(objectness, offsets, matches, target_offsets):
    return _rpn_loss(objectness, offsets, matches, target_offsets, per=(matches >= 0).sum())


def rpn_loss_boxes_of_every_anchor(objectness, offsets, matches, target_offsets):
    return _rpn_loss(objectness, offsets, matches, target_offsets, boxes=matches != -2)  # background too


def rpn_loss_default_smooth_l1(objectness, offsets, matches, target_offsets):
    return _rpn_loss(objectness, offsets, matches, target_offsets, beta=1.0)


WRONG["rpn_loss"] = [
    rpn_loss_ignored_anchors_as_background,
    rpn_loss_box_loss_per_positive,
    rpn_loss_boxes_of_every_anchor,
    rpn_loss_default_smooth_l1,
]
