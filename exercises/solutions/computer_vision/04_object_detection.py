"""Reference solutions to computer_vision/04's exercises (object detection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import ops


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    top_left = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)  # (N, M)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(dim=1), (b[:, 2:] - b[:, :2]).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - overlap
    hull = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).prod(dim=2)
    return overlap / union - (hull - union) / hull


def postprocess_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> torch.Tensor:
    candidates = torch.nonzero(scores > score_threshold).squeeze(1)
    keep = ops.batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou_threshold)
    return candidates[keep][:max_detections]


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)  # the probability given to the true answer
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce
