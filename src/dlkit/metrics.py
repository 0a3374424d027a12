"""Accuracy, confusion matrices, calibration, and a CSV file that grows by one row per epoch."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CSVLogger", "EpochMeter", "accuracy", "accuracy_of", "analogy_accuracy", "analogy_ranking",
    "calibration_bins", "confusion_matrix", "detection_map", "is_class_logits", "nearest_words",
    "num_correct", "predict_classes", "read_analogies",
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
        if self.fieldnames is None:
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


@torch.no_grad()
def predict_classes(
    model: torch.nn.Module, x: torch.Tensor, *, batch_size: int = 1000, amp_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The argmax class of ``model(x)`` for every example of ``x``, ``batch_size`` at a time, in eval mode.

    Each batch moves to the model's device; ``amp_dtype`` autocasts there (None: float32). Returns (N,)
    int64 on the CPU.
    """
    from dlkit.device import autocast

    model.eval()
    device = next(model.parameters()).device
    preds = []
    for batch in x.split(batch_size):
        with autocast(device, amp_dtype):
            preds.append(model(batch.to(device)).argmax(dim=1).cpu())
    return torch.cat(preds)


def accuracy_of(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    amp_dtype: torch.dtype | None = None,
) -> float:
    """The fraction of examples of ``x`` whose predicted class (:func:`predict_classes`) is ``y``."""
    return (
        (predict_classes(model, x, batch_size=batch_size, amp_dtype=amp_dtype) == y.cpu())
        .float()
        .mean()
        .item()
    )


def detection_map(
    preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """COCO mean average precision of box detections, by torchmetrics (pycocotools inside).

    ``preds``: one dict per image with "boxes" (K, 4) xyxy in pixels, "scores" (K,), "labels" (K,);
    ``targets``: "boxes" and "labels". Returns "map" (mAP@[.5:.95]), "map_50" and "map_75".
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(preds, targets)
    return {k: float(v) for k, v in metric.compute().items() if k in ("map", "map_50", "map_75")}


# --- Word vectors: analogies and neighbours (NLP lesson 01) ----------------------------------------


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors.float(), dim=1)


def read_analogies(path: str | Path, index: Mapping[str, int]) -> tuple[torch.Tensor, int]:
    """The analogy questions of ``path`` (Mikolov et al.'s format: "a b c d" lines, ": section" titles)
    whose four words are all in ``index`` (word -> row), as (Q, 4) row ids; and the number of questions."""
    rows, total = [], 0
    for line in Path(path).read_text().lower().splitlines():
        if line.startswith(":"):  # a section title, e.g. ": capital-common-countries"
            continue
        total += 1
        if all(w in index for w in line.split()):
            rows.append([index[w] for w in line.split()])
    return torch.tensor(rows, dtype=torch.long).view(-1, 4), total


@torch.no_grad()
def _analogy_scores(E: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Cosine of each unit row of E (V, D) with b - a + c for questions q (Q, 3+): (Q, V), a, b, c at -inf."""
    return ((E[q[:, 1]] - E[q[:, 0]] + E[q[:, 2]]) @ E.T).scatter_(1, q[:, :3], -float("inf"))


def analogy_accuracy(vectors: torch.Tensor, questions: torch.Tensor, chunk: int = 1024) -> float:
    """3CosAdd: the fraction of questions "a : b :: c : d" (Q, 4) whose d is the row of ``vectors`` (V, D)
    nearest (in cosine) to b - a + c, with a, b and c excluded; gensim's evaluate_word_analogies rule."""
    E = _unit_rows(vectors)
    correct = sum(
        (_analogy_scores(E, q).argmax(dim=1) == q[:, 3]).sum().item() for q in questions.split(chunk)
    )
    return correct / max(len(questions), 1)


def analogy_ranking(vectors: torch.Tensor, index: Mapping[str, int], a: str, b: str, c: str) -> list[int]:
    """Every row id but a, b, c, nearest to b - a + c first: "a : b :: c : ranking[0]"."""
    q = torch.tensor([[index[a], index[b], index[c]]])
    return _analogy_scores(_unit_rows(vectors), q)[0].argsort(descending=True)[:-3].tolist()


def nearest_words(vectors: torch.Tensor, words: list[str], word: str, k: int = 5) -> list[str]:
    """The ``k`` words whose rows of ``vectors`` are nearest (in cosine) to ``word``'s, nearest first."""
    E, i = _unit_rows(vectors), words.index(word)
    return [words[j] for j in (E @ E[i]).topk(k + 1).indices.tolist() if j != i][:k]
