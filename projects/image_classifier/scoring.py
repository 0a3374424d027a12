"""Score a classifier on a split: accuracy, per-class accuracy, confusion matrix, calibration, with or
without test-time augmentation (TTA). `train` scores the test split once at the end with it; `evaluate`
scores a finished run's validation or test split.

TTA averages the logits of each image and its mirror image (and, with ``translate=1``, of copies
shifted by one pixel, as airbench does). Calibration is :func:`dlkit.metrics.calibration_bins` of the
softmax probability of the predicted class: its expected calibration error (ECE) and the reliability
diagram.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.augment import tta_logits
from dlkit.data import ImageData
from dlkit.device import autocast, resolve_amp_dtype
from dlkit.metrics import calibration_bins, confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_reliability, save_figure

__all__ = ["evaluate_model", "predict_logits", "save_evaluation_plots"]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: torch.device,
    tta: bool = False,
    translate: int = 0,
    amp: bool | None = None,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Logits (N, K) of images ``x`` (N, C, H, W) in [0, 1], a batch at a time, in float32 on the CPU."""
    model.eval()
    amp_dtype = resolve_amp_dtype(amp, device)
    outputs = []
    for batch in x.split(batch_size):
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = tta_logits(model, batch, translate=translate) if tta else model(batch)
        outputs.append(logits.float().cpu())
    return torch.cat(outputs)


def evaluate_model(
    model: nn.Module,
    data: ImageData,
    *,
    device: torch.device | str = "cpu",
    tta: bool = False,
    translate: int = 0,
    amp: bool | None = None,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, per-class accuracy (a list in class order), the confusion matrix
    of ``model`` on ``data``, and its calibration."""
    device = torch.device(device)
    logits = predict_logits(
        model, data.x, device=device, tta=tta, translate=translate if tta else 0, amp=amp,
        batch_size=batch_size,
    )  # fmt: skip
    y_pred = logits.argmax(dim=1)  # (N,)
    cm = confusion_matrix(y_pred, data.y, len(data.classes))  # (K, K), row = true class
    per_class = (cm.diag().double() / cm.sum(dim=1).clamp_min(1)).tolist()
    calibration = calibration_bins(logits.softmax(dim=1).amax(dim=1), y_pred == data.y)
    return {
        "acc": (y_pred == data.y).double().mean().item(), "loss": F.cross_entropy(logits, data.y).item(),
        "per_class_acc": per_class, "confusion": cm, "ece": calibration["ece"], "calibration": calibration,
    }  # fmt: skip


def save_evaluation_plots(
    results: dict[str, Any], classes: Sequence[str], run_dir: str | Path, split: str, title: str = ""
) -> None:
    """``confusion_<split>.png`` (rows: true, columns: predicted) and ``calibration_<split>.png`` (the
    reliability diagram) of :func:`evaluate_model`'s results, in ``run_dir``."""
    run_dir = Path(run_dir)
    fig = plot_confusion_matrix(results["confusion"], list(classes), title=title)
    save_figure(fig, run_dir / f"confusion_{split}.png")
    fig = plot_reliability(results["calibration"], title=title, unit="images")
    save_figure(fig, run_dir / f"calibration_{split}.png")
