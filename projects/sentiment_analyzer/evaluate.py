"""Score a trained run on its validation or test split: accuracy, F1, calibration.

    python -m projects.sentiment_analyzer evaluate --run-dir runs/sentiment_analyzer/imdb-nbsvm
    python -m projects.sentiment_analyzer evaluate --run-dir ... --split val

The split is rebuilt from the run's config.json (the same validation reviews training held out). Writes
``<run-dir>/evaluation_<split>.json``, ``<split>_confusion.png`` and ``<split>_calibration.png``: a
reliability diagram (in each bin of predicted confidence, how often the model was right) with the
expected calibration error ECE = sum over bins of (bin size / N) * |accuracy - mean confidence|
(Guo et al. 2017, 15 bins). Reviews go through the release's input path (the featurizer's
``encode``), so these are the numbers predict and serve give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dlkit import project
from dlkit.config import flag, parse_config
from dlkit.device import get_device
from dlkit.metrics import calibration_bins, confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_reliability
from dlkit.runs import RunFolder, write_json
from projects.sentiment_analyzer.data import length_batches, load_splits
from projects.sentiment_analyzer.models import load_run

__all__ = ["EvalConfig", "binary_metrics", "main", "report", "scores_of"]

SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


@dataclass
class EvalConfig(project.EvalConfig):
    """Score the model of a run folder on its validation or test reviews."""

    bins: int = flag(15, help="confidence bins of the reliability diagram", min=2, max=100)


def binary_metrics(z: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, Any]:
    """Accuracy, F1 of the positive class, macro F1, log loss and ECE of scores z (N,) = logit p(pos)."""
    z, labels = z.double(), labels.long()
    y_hat = (z > 0).long()
    cm = confusion_matrix(y_hat, labels, 2)  # rows: true class
    tp, fp, fn, tn = cm[1, 1].item(), cm[0, 1].item(), cm[1, 0].item(), cm[0, 0].item()
    f1_pos = 2 * tp / max(2 * tp + fp + fn, 1)
    f1_neg = 2 * tn / max(2 * tn + fn + fp, 1)
    p_pos = torch.sigmoid(z)
    confidence = torch.where(y_hat == 1, p_pos, 1 - p_pos)  # the probability of the predicted class
    calib = calibration_bins(confidence, y_hat == labels, bins)
    return {
        "acc": (y_hat == labels).double().mean().item(),
        "f1": f1_pos,
        "f1_macro": (f1_pos + f1_neg) / 2,
        "log_loss": F.binary_cross_entropy_with_logits(z, labels.double()).item(),
        "ece": calib["ece"],
        "num_reviews": len(labels),
        "confusion": cm.tolist(),
        "calibration": calib,
    }


@torch.no_grad()
def scores_of(
    model: torch.nn.Module, featurizer: Any, texts: Sequence[str], device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """z = logit(pos) - logit(neg) (N,) of ``texts``, through the release's input path (``encode``),
    in batches of similar length."""
    model.eval()
    z = torch.empty(len(texts))
    for idx in length_batches([len(t) for t in texts], batch_size, shuffle=False):
        inputs = featurizer.encode([texts[i] for i in idx])
        logits = model(*(t.to(device) for t in inputs)).float()  # (B, 2)
        z[idx] = (logits[:, 1] - logits[:, 0]).cpu()
    return z


def report(
    run: RunFolder, split: str, z: torch.Tensor, labels: torch.Tensor, title: str, bins: int = 15
) -> dict[str, Any]:
    """:func:`binary_metrics` of one split, with ``<split>_calibration.png`` and ``<split>_confusion.png``
    written to the run folder; returns the metrics without the per-bin table."""
    metrics = binary_metrics(z, labels, bins)
    title = f"{title}, {SPLIT_NAMES[split]} reviews"
    run.savefig(
        plot_reliability(metrics.pop("calibration"), title=title, unit="reviews"), f"{split}_calibration"
    )
    cm = torch.tensor(metrics["confusion"])
    run.savefig(plot_confusion_matrix(cm, ["negative", "positive"], title=title), f"{split}_confusion")
    return metrics


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate ``--run-dir``'s model on ``--split``; writes evaluation_<split>.json and the plots."""
    cfg = parse_config(EvalConfig, argv)
    run = project.trained_run(cfg.run_dir)
    device = get_device(cfg.device)
    model, featurizer, info = load_run(run.path, device)
    saved = run.read_config()
    splits = load_splits(
        saved["dataset"],
        val_fraction=saved["val_fraction"],
        train_subset=saved.get("train_subset"),
        test_subset=saved.get("test_subset"),
        seed=saved["seed"],
    )
    data = splits.of(cfg.split)
    z = scores_of(model, featurizer, data.texts, device, cfg.batch_size)
    name = info["architecture"]["name"]
    result = {"model": name, "split": cfg.split, "dataset": data.source}
    result.update(report(run, cfg.split, z, data.labels, f"{name} on {saved['dataset']}", cfg.bins))
    write_json(run / f"evaluation_{cfg.split}.json", result)
    print(
        f"{name} on {len(data):,} {SPLIT_NAMES[cfg.split]} reviews of {data.source}: accuracy "
        f"{result['acc']:.4f}, F1 {result['f1']:.4f}, ECE {result['ece']:.4f}"
    )
    return result
