"""Evaluate a trained run: accuracy, per-class accuracy, a confusion matrix and calibration, with or
without TTA.

    python -m projects.image_classifier evaluate --run-dir runs/image_classifier/cifar10_jpeg-resnet_small
    python -m projects.image_classifier evaluate --run-dir ... --no-tta        # the plain model

Test-time augmentation (TTA) averages the logits of each image and its mirror image (and, with
``--translate 1``, of copies shifted by one pixel, as airbench does). The results go to
``<run-dir>/evaluation.json``, ``<run-dir>/confusion.png`` and ``<run-dir>/calibration.png`` (the
reliability diagram: in each bin of softmax confidence, how often the model was right; its expected
calibration error, ECE, is in the JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.augment import tta_logits
from dlkit.config import parse_config
from dlkit.data import ImageData
from dlkit.device import get_device
from dlkit.metrics import calibration_bins, confusion_matrix
from dlkit.plots import plot_confusion_matrix, plot_reliability, save_figure
from dlkit.train import resolve_amp_dtype

__all__ = ["EvalConfig", "evaluate_model", "main", "predict_logits", "save_evaluation_plots"]


@dataclass
class EvalConfig:
    """Evaluate the model of a run folder on its dataset's test split."""

    run_dir: str = field(default="", metadata={"help": "the run folder train wrote (required)"})
    tta: bool = field(default=True, metadata={"help": "average over the image and its mirror image"})
    translate: int = field(default=1, metadata={"help": "with --tta, also views shifted by this many pixels"})
    batch_size: int = 1000
    amp: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where it pays)"})
    test_subset: int | None = None
    image_folder: str | None = field(default=None, metadata={"help": "for runs trained on an image folder"})
    quick: bool = False
    device: str = "auto"


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
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
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
    """Accuracy, per-class accuracy (a list in class order), the confusion matrix of ``model`` and its
    calibration (:func:`dlkit.metrics.calibration_bins` of the softmax probability of the predicted class)."""
    device = torch.device(device)
    logits = predict_logits(
        model,
        data.x,
        device=device,
        tta=tta,
        translate=translate if tta else 0,
        amp=amp,
        batch_size=batch_size,
    )
    y_pred = logits.argmax(dim=1)  # (N,)
    cm = confusion_matrix(y_pred, data.y, len(data.classes))  # (K, K), row = true class
    per_class = (cm.diag().double() / cm.sum(dim=1).clamp_min(1)).tolist()
    calibration = calibration_bins(logits.softmax(dim=1).amax(dim=1), y_pred == data.y)
    return {
        "acc": (y_pred == data.y).double().mean().item(), "per_class_acc": per_class, "confusion": cm,
        "ece": calibration["ece"], "calibration": calibration,
    }  # fmt: skip


def save_evaluation_plots(
    results: dict[str, Any], classes: Sequence[str], run_dir: str | Path, title: str = ""
) -> None:
    """confusion.png (rows: true, columns: predicted) and calibration.png (the reliability diagram) of
    :func:`evaluate_model`'s results, in ``run_dir``."""
    run_dir = Path(run_dir)
    save_figure(
        plot_confusion_matrix(results["confusion"], list(classes), title=title), run_dir / "confusion.png"
    )
    fig = plot_reliability(results["calibration"], title=title, unit="images")
    save_figure(fig, run_dir / "calibration.png")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate ``--run-dir``'s model on the test split; writes evaluation.json and the plots there."""
    from projects.image_classifier.data import load_splits
    from projects.image_classifier.train import load_trained

    cfg = parse_config(EvalConfig, argv, quick={"test_subset": 500})
    if not cfg.run_dir:
        raise SystemExit("evaluate needs --run-dir (a folder written by `train`)")
    run_dir, device = Path(cfg.run_dir), get_device(cfg.device)
    model, info = load_trained(run_dir, device)
    dataset, image_folder = info["dataset_name"], None
    if dataset == "image_folder":  # the folder trained on, unless another is given
        image_folder = cfg.image_folder or json.loads((run_dir / "config.json").read_text())["image_folder"]
    size = info["preprocessing"]["size"][0]
    test = load_splits(dataset, image_folder=image_folder, image_size=size, test_subset=cfg.test_subset).test
    results = evaluate_model(
        model,
        test,
        device=device,
        tta=cfg.tta,
        translate=cfg.translate,
        amp=cfg.amp,
        batch_size=cfg.batch_size,
    )
    title = f"{info['dataset']}, test{' (TTA)' if cfg.tta else ''}"
    save_evaluation_plots(results, info["classes"], run_dir, title=title)
    report = {
        "dataset": info["dataset"],
        "num_images": len(test),
        "tta": cfg.tta,
        "translate": cfg.translate if cfg.tta else 0,
        "acc": results["acc"],
        "per_class_acc": dict(zip(info["classes"], results["per_class_acc"], strict=True)),
        "confusion": results["confusion"].tolist(),
        "ece": results["ece"],
        "calibration": results["calibration"],
    }
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    with_tta = " with TTA" if cfg.tta else ""
    print(f"{info['dataset']} test accuracy{with_tta}: {results['acc']:.4f}, ECE {results['ece']:.3f} "
          f"({len(test):,} images)")  # fmt: skip
    for name, acc in report["per_class_acc"].items():
        print(f"  {name:>12s}  {acc:.3f}")
    return report
