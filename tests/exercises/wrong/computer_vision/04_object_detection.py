"""Plausible wrong answers to computer_vision/04's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import ops


def _giou(a, b, clamp=True, hull_corners=True, penalty=True):
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    size = bottom_right - top_left
    overlap = (size.clamp(min=0) if clamp else size).prod(dim=2)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(dim=1), (b[:, 2:] - b[:, :2]).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - overlap
    if hull_corners:
        hull = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).prod(
            dim=2
        )
    else:
        hull = size.prod(dim=2)  # the overlap's corners, not the enclosing box's
    return overlap / union - ((hull - union) / hull if penalty else 0)


def giou_no_clamp(a, b):
    return _giou(a, b, clamp=False)  # disjoint boxes get a "negative overlap"


def giou_hull_is_the_overlap(a, b):
    return _giou(a, b, hull_corners=False)


def giou_without_penalty(a, b):
    return _giou(a, b, penalty=False)  # plain IoU


def postprocess_class_agnostic(boxes, scores, labels, score_threshold, iou_threshold, max_detections):
    candidates = torch.nonzero(scores > score_threshold).squeeze(1)
    keep = ops.nms(boxes[candidates], scores[candidates], iou_threshold)  # a shoe suppresses a bag
    return candidates[keep][:max_detections]


def postprocess_top_k_before_nms(boxes, scores, labels, score_threshold, iou_threshold, max_detections):
    candidates = torch.nonzero(scores > score_threshold).squeeze(1)
    candidates = candidates[scores[candidates].argsort(descending=True)][:max_detections]  # too early
    keep = ops.batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou_threshold)
    return candidates[keep]


def postprocess_indices_of_the_filtered(
    boxes, scores, labels, score_threshold, iou_threshold, max_detections
):
    candidates = torch.nonzero(scores > score_threshold).squeeze(1)
    keep = ops.batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou_threshold)
    return keep[:max_detections]  # indices into the filtered boxes, not the inputs


WRONG = {
    "generalized_box_iou": [giou_no_clamp, giou_hull_is_the_overlap, giou_without_penalty],
    "postprocess_detections": [
        postprocess_class_agnostic,
        postprocess_top_k_before_nms,
        postprocess_indices_of_the_filtered,
    ],
}


def focal_alpha_on_the_wrong_class(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = (1 - alpha) * targets + alpha * (1 - targets)  # alpha weighs the negatives
    return alpha_t * (1 - p_t) ** gamma * ce


def focal_log_of_sigmoid(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = -targets * torch.log(p) - (1 - targets) * torch.log(1 - p)  # inf once sigmoid rounds to 0 or 1
    p_t = p * targets + (1 - p) * (1 - targets)
    return (alpha * targets + (1 - alpha) * (1 - targets)) * (1 - p_t) ** gamma * ce


def focal_weight_on_p_not_p_t(logits, targets, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (alpha * targets + (1 - alpha) * (1 - targets)) * (1 - p) ** gamma * ce  # same weight for both


WRONG["focal_loss"] = [focal_alpha_on_the_wrong_class, focal_log_of_sigmoid, focal_weight_on_p_not_p_t]
