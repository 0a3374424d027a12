"""Accuracy, confusion matrices, calibration, and a CSV file that grows by one row per epoch."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CSVLogger", "EpochMeter", "accuracy", "calibration_bins", "confusion_matrix", "is_class_logits",
    "num_correct",
]  # fmt: skip


def is_class_logits(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """True when ``outputs`` are (B, C) class scores and ``targets`` are (B,) int64 class ids."""
    return (
        outputs.ndim == 2
        and targets.ndim == 1
        and targets.dtype == torch.int64
        and outputs.shape[0] == targets.shape[0]
        and outputs.is_floating_point()
    )


def num_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many rows of (B, C) ``logits`` have their largest score at the target class (a 0-d tensor).

    It stays a tensor on the device, so a training loop can add it up without waiting for the GPU.
    """
    return (logits.argmax(dim=1) == targets).sum()


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The fraction of (B, C) ``logits`` whose argmax equals the (B,) ``targets``."""
    if not is_class_logits(logits, targets):
        raise ValueError(
            f"accuracy needs (B, C) logits and (B,) int64 targets, got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)} {targets.dtype}"
        )
    return num_correct(logits, targets).item() / max(len(targets), 1)


class CSVLogger:
    """Append one dict per call to a CSV file; the first row fixes the columns.

    With ``append=False`` an existing file is replaced by the first row logged (``fit`` uses this to
    rewrite the history it restored from a checkpoint, so no epoch appears twice). With
    ``append=True`` new rows go after the existing ones, under the existing header.
    """

    def __init__(self, path: str | Path, *, append: bool = True) -> None:
        self.path = Path(path)
        self.fieldnames: list[str] | None = None
        if append and self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as f:
                self.fieldnames = next(csv.reader(f), None)
        elif not append:
            self.path.unlink(missing_ok=True)

    def log(self, row: Mapping[str, Any]) -> None:
        """Write ``row``; keys that the first row did not have are left out, missing ones left empty."""
        new_file = self.fieldnames is None
        if new_file:
            self.fieldnames = list(row)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a" if not new_file else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class EpochMeter:
    """Running sums over an epoch: loss * batch size, correct predictions, samples.

    The sums stay a tensor on the device, so the loop never waits for the GPU with ``.item()``; under
    DDP one ``all_reduce(meter.sums)`` turns every process's sums into the global ones.
    """

    def __init__(self, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(3, dtype=dtype, device=device)  # (loss * n, correct, n)
        self.classification = True

    def update(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: ``loss`` is the batch mean, ``outputs`` the model's, ``targets`` the labels."""
        n = targets.shape[0]
        self.sums[0] += loss.detach() * n
        if is_class_logits(outputs, targets):
            self.sums[1] += num_correct(outputs.detach(), targets)
        else:
            self.classification = False
        self.sums[2] += n

    def compute(self) -> dict[str, float]:
        """{"loss": mean loss per sample, "acc": accuracy (only when every batch was classification)}."""
        loss_sum, correct, count = self.sums.tolist()
        if count == 0:
            return {"loss": float("nan")}
        result = {"loss": loss_sum / count}
        if self.classification:
            result["acc"] = correct / count
        return result


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of (true class, predicted class) pairs: an int64 (num_classes, num_classes) tensor.

    Row i holds the examples whose true class is i, column j those predicted as j (the convention of
    ``sklearn.metrics.confusion_matrix``), so the diagonal holds the correct predictions and
    ``cm.diag() / cm.sum(1)`` is each class's recall. ``preds`` are (N,) class ids, or (N, C) scores
    whose argmax is taken. The result is on the device of the inputs.
    """
    if preds.ndim == 2:
        preds = preds.argmax(dim=1)
    if preds.shape != targets.shape or preds.ndim != 1:
        raise ValueError(
            f"need (N,) predictions and (N,) targets, got {tuple(preds.shape)} and {tuple(targets.shape)}"
        )
    preds, targets = preds.long(), targets.long()
    for name, ids in (("predictions", preds), ("targets", targets)):
        if ids.numel() and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"{name} must be class ids in [0, {num_classes}), got {ids.min()}..{ids.max()}")
    # Pair (t, p) gets the single index t * C + p; counting those indices fills the matrix row by row.
    counts = torch.bincount(targets * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def calibration_bins(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> dict[str, Any]:
    """How well predicted probabilities match how often the model is right, per equal-width bin of
    confidence (the probability of the predicted class) on [0, 1]: count, mean confidence, accuracy;
    and the expected calibration error ECE = sum over bins of (count / N) * |accuracy - confidence|
    (Guo et al. 2017 use 15 bins). Plain lists and floats, ready for JSON and
    :func:`dlkit.plots.plot_reliability`.
    """
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"need (N,) confidences and (N,) correct flags, got {tuple(confidence.shape)} "
                         f"and {tuple(correct.shape)}")  # fmt: skip
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    confidence, correct = confidence.detach().cpu().double(), correct.detach().cpu().double()
    which = torch.bucketize(confidence, edges[1:-1], right=True)  # (N,) bin of each prediction
    count = torch.bincount(which, minlength=bins).double()
    conf = torch.bincount(which, confidence, minlength=bins) / count.clamp_min(1)
    acc = torch.bincount(which, correct, minlength=bins) / count.clamp_min(1)
    ece = float((count / max(len(confidence), 1) * (acc - conf).abs()).sum())
    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": conf.tolist(),
        "accuracy": acc.tolist(),
        "ece": ece,
    }
