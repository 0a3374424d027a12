"""Evaluate a trained run on its dataset's test split: accuracy, F1, calibration.

    python -m projects.sentiment_analyzer evaluate --run-dir runs/sentiment_analyzer/imdb-nbsvm

Writes ``<run-dir>/evaluation.json``, ``confusion.png`` and ``calibration.png``: a reliability diagram
(in each bin of predicted confidence, how often the model was right) with the expected calibration error
ECE = sum over bins of (bin size / N) * |accuracy - mean confidence| (Guo et al. 2017, 15 bins).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlkit.config import parse_config
from dlkit.device import get_device
from dlkit.metrics import calibration_bins, confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_reliability, save_figure

__all__ = ["EvalConfig", "binary_metrics", "main", "report_and_plots"]


@dataclass
class EvalConfig:
    """Evaluate the model of a run folder on its dataset's test split."""

    run_dir: str = field(default="", metadata={"help": "the run folder train wrote (required)"})
    test_subset: int | None = None
    bins: int = field(default=15, metadata={"help": "confidence bins of the reliability diagram"})
    quick: bool = False
    device: str = "auto"


def binary_metrics(z: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, Any]:
    """Accuracy, F1 of the positive class, macro F1, log loss and ECE of scores z (N,) = logit p(pos)."""
    z, labels = z.double(), labels.long()
    y_hat = (z > 0).long()
    cm = confusion_matrix(y_hat, labels, 2)  # rows: true class
    tp, fp, fn = cm[1, 1].item(), cm[0, 1].item(), cm[1, 0].item()
    tn = cm[0, 0].item()
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
        "confusion": cm.tolist(),
        "calibration": calib,
    }


def report_and_plots(
    z: torch.Tensor, labels: torch.Tensor, run_dir: Path, title: str = "", bins: int = 15
) -> dict[str, Any]:
    """:func:`binary_metrics`, with calibration.png and confusion.png written to ``run_dir``."""
    metrics = binary_metrics(z, labels, bins)
    save_figure(
        plot_reliability(metrics["calibration"], title=title, unit="reviews"), run_dir / "calibration.png"
    )
    cm = torch.tensor(metrics["confusion"])
    save_figure(plot_confusion_matrix(cm, ["neg", "pos"], title=title), run_dir / "confusion.png")
    return {k: v for k, v in metrics.items() if k != "calibration"}


@torch.no_grad()
def scores_of(
    model: torch.nn.Module, featurizer: Any, texts: Sequence[str], device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """z = logit(pos) - logit(neg) (N,) of ``texts`` through the same path as predict."""
    from projects.sentiment_analyzer.train import length_batches

    lengths = [len(t) for t in texts]  # batches of similar length: less padding
    z = torch.empty(len(texts))
    for idx in length_batches(lengths, batch_size, shuffle=False):
        inputs = featurizer.encode([texts[i] for i in idx])
        logits = model(*(t.to(device) for t in inputs)).float()  # (B, 2)
        z[idx] = (logits[:, 1] - logits[:, 0]).cpu()
    return z


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate ``--run-dir``'s model on the test split; writes evaluation.json and the plots there."""
    from projects.sentiment_analyzer.data import load_splits
    from projects.sentiment_analyzer.train import load_trained

    cfg = parse_config(EvalConfig, argv, quick={"test_subset": 500})
    if not cfg.run_dir:
        raise SystemExit("evaluate needs --run-dir (a folder written by `train`)")
    run_dir, device = Path(cfg.run_dir), get_device(cfg.device)
    model, featurizer, info = load_trained(run_dir, device)
    saved = json.loads((run_dir / "config.json").read_text())
    test_subset = cfg.test_subset or (
        saved.get("test_subset") if info["dataset_name"] == "synthetic" else None
    )
    _, test = load_splits(
        info["dataset_name"],
        train_subset=saved.get("train_subset"),
        test_subset=test_subset,
        seed=saved.get("seed", 0),
    )
    z = scores_of(model, featurizer, test.texts, device)
    title = f"{info['model']} on {info['dataset_name']} test"
    report = {"model": info["model"], "dataset": test.source, "num_reviews": len(test)}
    report.update(report_and_plots(z, test.labels, run_dir, title, cfg.bins))
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{title}: accuracy {report['acc']:.4f}, F1 {report['f1']:.4f}, ECE {report['ece']:.4f} "
        f"({len(test):,} reviews)"
    )
    return report
