"""Evaluate a trained run on its validation or test split: accuracy, per-class accuracy, a confusion
matrix and calibration, with or without test-time augmentation (TTA).

    python -m projects.image_classifier evaluate --run-dir runs/image_classifier/cifar10-resnet_small
    python -m projects.image_classifier evaluate --run-dir ... --split val --no-tta

The splits are made again exactly as `train` made them (the run's config.json: dataset, subsets,
validation fraction). The results go to ``<run-dir>/evaluation_<split>.json``,
``confusion_<split>.png`` and ``calibration_<split>.png`` (the reliability diagram: in each bin of
softmax confidence, how often the model was right; its expected calibration error, ECE, is in the
JSON). Compare models on ``--split val``; score the test split once, for the one you keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlkit import project
from dlkit.config import flag, parse_config
from dlkit.device import get_device
from dlkit.errors import UserError
from dlkit.runs import load_trained, write_json
from projects.image_classifier.data import load_splits
from projects.image_classifier.models import model_from_info
from projects.image_classifier.scoring import evaluate_model, save_evaluation_plots

__all__ = ["EvalConfig", "main"]


@dataclass
class EvalConfig(project.EvalConfig):
    """Evaluate the model of a run folder on its validation or test split."""

    tta: bool = flag(True, help="average over the image and its mirror image (test-time augmentation)")
    translate: int = flag(1, help="with --tta, also views shifted by this many pixels", max=4)
    amp: bool | None = flag(None, help="bf16 autocast (default: where the hardware runs it fast)")
    test_subset: int | None = flag(None, help="score this many test images (default: as in training)", min=1)
    image_folder: str = flag("", help="for runs trained on an image folder: another copy of it")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate ``--run-dir``'s model; writes evaluation_<split>.json and the plots there."""
    cfg = parse_config(EvalConfig, argv)
    run = project.trained_run(cfg.run_dir)
    device = get_device(cfg.device)
    model, info = load_trained(run.path, model_from_info, device)
    trained = run.read_config()
    if cfg.split == "val" and not info.get("val_fraction"):
        raise UserError(f"{run.path} was trained with --val-fraction 0: it has no validation split")
    splits = load_splits(
        info["dataset_name"] if info["dataset_name"] != "image_folder" else "",
        image_folder=cfg.image_folder or trained.get("image_folder") or "",
        image_size=info["preprocessing"]["size"][0], val_fraction=info.get("val_fraction", 0.0),
        train_subset=trained.get("train_subset"), test_subset=cfg.test_subset or trained.get("test_subset"),
        seed=trained.get("seed", 0),
    )  # fmt: skip
    data = splits.val if cfg.split == "val" else splits.test
    assert data is not None  # val_fraction > 0 was checked above
    results = evaluate_model(
        model,
        data,
        device=device,
        tta=cfg.tta,
        translate=cfg.translate,
        amp=cfg.amp,
        batch_size=cfg.batch_size,
    )
    title = f"{info['dataset']}, {cfg.split}{' (TTA)' if cfg.tta else ''}"
    save_evaluation_plots(results, info["classes"], run.path, cfg.split, title=title)
    report = {
        "dataset": info["dataset"],
        "split": cfg.split,
        "num_images": len(data),
        "tta": cfg.tta,
        "translate": cfg.translate if cfg.tta else 0,
        "acc": results["acc"],
        "loss": results["loss"],
        "per_class_acc": dict(zip(info["classes"], results["per_class_acc"], strict=True)),
        "confusion": results["confusion"].tolist(),
        "ece": results["ece"],
        "calibration": results["calibration"],
    }
    write_json(run / f"evaluation_{cfg.split}.json", report)
    with_tta = " with TTA" if cfg.tta else ""
    print(f"{info['dataset']} {cfg.split} accuracy{with_tta}: {results['acc']:.4f}, ECE {results['ece']:.3f} "
          f"({len(data):,} images)")  # fmt: skip
    for name, acc in report["per_class_acc"].items():
        print(f"  {name:>12s}  {acc:.3f}")
    return report
