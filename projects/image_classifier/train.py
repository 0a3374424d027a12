"""Train an image classifier with ``dlkit.train.train_loop`` and leave a complete run folder behind.

    python -m projects.image_classifier train                          # CIFAR-10, resnet_small, 10 epochs
    python -m projects.image_classifier train --dataset cifar10_jpeg   # the JPEG copy, when you have it
    python -m projects.image_classifier train --quick                  # seconds, offline
    python -m projects.image_classifier train --run-name cifar10-resnet_small --resume   # after a kill
    torchrun --nproc_per_node 2 -m projects.image_classifier train ...  # two processes, one global batch

A fixed random 10% of the training images (``--val-fraction``) is held out as the validation split:
it is scored after every epoch and picks the weights the run ends on (``--keep-best``, on validation
accuracy) and when to stop (``--patience``). The test split is scored once, at the end, with and
without test-time augmentation. ``--val-fraction 0`` trains on every training image (airbench's
timed recipe does): the run then ends on its last weights.

The run folder (``runs/image_classifier/<run-name>/``, under ``$DLKIT_RUNS`` when set) holds
config.json, metrics.csv (one row per epoch), loss.png, accuracy.png, confusion_test.png,
calibration_test.png, checkpoint.pt (saved after every epoch: ``--resume`` continues a killed run)
and model_info.json, which says how to rebuild the model, what its inputs are and what it scored.

The recipe is airbench94's (Keller Jordan's cifar10-airbench) as far as a plain loop allows: Nesterov
SGD with its decoupled learning rate and weight decay (per 1024 examples), 64x the learning rate for
the BatchNorm shifts, label smoothing 0.2, a triangular schedule, and flips plus 2-pixel translations
done a batch at a time. ``fast.py`` adds the rest (lookahead, alternating flips, torch.compile).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlkit import project
from dlkit.config import flag
from dlkit.device import describe_device, resolve_amp_dtype
from dlkit.plots import plot_curves
from dlkit.runs import RunFolder
from dlkit.train import (
    Budget,
    Callback,
    Evaluation,
    History,
    Selection,
    cleanup_distributed,
    evaluate,
    is_main_process,
    train_loop,
)
from projects.image_classifier.data import (
    DATASETS,
    MIN_SIZE,
    BatchLoader,
    Splits,
    channel_stats,
    load_splits,
    quick_dataset,
)
from projects.image_classifier.models import MODELS, build_model
from projects.image_classifier.recipe import airbench_sgd, recipe_value, triangle
from projects.image_classifier.scoring import evaluate_model, save_evaluation_plots

__all__ = ["QUICK", "TrainConfig", "main", "model_info", "run_of"]

PROJECT = "image_classifier"


@dataclass
class TrainConfig(project.TrainConfig):
    """Train an image classifier and write a run folder; every field is a flag."""

    dataset: str = flag(
        "cifar10",
        help="cifar10 (the official set, downloaded when missing), cifar10_jpeg (a JPEG copy, no public "
        "download), fashion_mnist or digits",
        choices=DATASETS,
    )
    image_folder: str = flag("", help="a folder of class subfolders to train on instead of --dataset")
    image_size: int = flag(32, help="images of --image-folder are resized to this", min=MIN_SIZE)
    model: str = flag("resnet_small", help="the network (models.py)", choices=tuple(MODELS))
    widths: tuple[int, ...] = flag((), help="resnet_small's 3 widths (default 64 256 256)", min=1)
    num_epochs: int = 10
    batch_size: int = 512
    val_fraction: float = flag(
        0.1, help="share of the training images held out for validation (0: train on all)", min=0, max=0.5
    )
    keep_best: bool = flag(True, help="end on the weights of the best validation accuracy")
    patience: int | None = flag(None, help="stop after this many epochs without a better val accuracy", min=1)
    lr: float | None = flag(
        None, help="learning rate per 1024 examples (default: the model's recipe)", above=0
    )
    momentum: float = 0.85
    weight_decay: float | None = flag(None, help="per 1024 examples, decoupled from lr (default: recipe)")
    bias_scaler: float | None = flag(
        None, help="lr multiplier of BatchNorm shifts (default: recipe)", above=0
    )
    label_smoothing: float = 0.2
    flip: bool = flag(True, help="mirror training images at random")
    translate: int = flag(2, help="random shifts of up to this many pixels", max=8)
    cutout: int = flag(0, help="side of a zeroed square per image (0: none)")
    tta_translate: int = flag(1, help="test-time views shifted by this many pixels (0: mirror only)", max=4)
    amp: bool | None = flag(None, help="bf16 autocast (default: where the hardware runs it fast)")
    channels_last: bool = flag(True, help="NHWC batches (faster convolutions on GPUs and most CPUs)")
    train_subset: int | None = None
    test_subset: int | None = None


QUICK = {"num_epochs": 2, "train_subset": 512, "test_subset": 256, "batch_size": 64, "widths": (16, 32, 32)}


def run_of(cfg: TrainConfig) -> RunFolder:
    """``<runs>/image_classifier/<run-name>``; by default ``<dataset>-<model>``, ``-quick`` for quick runs."""
    source = "image_folder" if cfg.image_folder else cfg.dataset
    return RunFolder.of(
        PROJECT, cfg.run_name or f"{source}-{cfg.model}{'-quick' if cfg.quick else ''}", cfg.runs_dir
    )


def load_data(cfg: TrainConfig) -> Splits:
    """The splits the flags describe (quick mode: data found on this machine, else digits)."""
    dataset = quick_dataset(cfg.dataset) if cfg.quick and not cfg.image_folder else cfg.dataset
    return load_splits(
        dataset, image_folder=cfg.image_folder, image_size=cfg.image_size, val_fraction=cfg.val_fraction,
        train_subset=cfg.train_subset, test_subset=cfg.test_subset, seed=cfg.seed,
    )  # fmt: skip


def model_info(
    cfg: TrainConfig, splits: Splits, kwargs: dict[str, Any], metrics: dict[str, Any]
) -> dict[str, Any]:
    """What evaluate, export, predict and serve need to rebuild the model and feed it (see models.py)."""
    C, H, W = splits.image_shape
    return {
        "model": cfg.model,
        "model_kwargs": kwargs,
        "num_classes": len(splits.classes),
        "in_channels": C,
        "classes": splits.classes,
        "preprocessing": {
            "size": [H, W],
            "channels": C,
            "color": "RGB" if C == 3 else "L",
            "resize": "bilinear",
            "input_range": [0.0, 1.0],  # pixels / 255
            # The model normalises with its own Normalize layer: callers apply mean 0, std 1.
            "mean": [0.0] * C,
            "std": [1.0] * C,
            "normalize_in_model": True,
            "model_mean": kwargs["mean"],
            "model_std": kwargs["std"],
        },
        "dataset": splits.dataset,
        "dataset_name": splits.dataset_name,
        "val_fraction": cfg.val_fraction,
        "metrics": metrics,
    }


def make_loaders(
    cfg: TrainConfig, splits: Splits, device: torch.device
) -> tuple[BatchLoader, BatchLoader | None]:
    """The whole dataset moves to the device; augmentation is a few tensor ops per batch."""
    x, y = splits.train.x.to(device), splits.train.y.to(device)
    train = BatchLoader(
        x, y, cfg.batch_size, shuffle=True, flip=cfg.flip, translate=cfg.translate, cutout=cfg.cutout,
        drop_last=len(y) > cfg.batch_size, channels_last=cfg.channels_last,
    )  # fmt: skip
    if splits.val is None:
        return train, None
    x_val, y_val = splits.val.x.to(device), splits.val.y.to(device)
    return train, BatchLoader(x_val, y_val, 1000, channels_last=cfg.channels_last)


def save_curves(history: History, run: RunFolder) -> None:
    """loss.png and accuracy.png: training and validation per epoch."""
    for metric, label in (("loss", "loss"), ("acc", "accuracy")):
        curves = {
            f"{split} {label}": history.column(f"{split}_{metric}")
            for split in ("train", "val")
            if history.rows and f"{split}_{metric}" in history.rows[0]
        }
        if curves:
            run.savefig(plot_curves(curves, title=f"{label} per epoch", xlabel="epoch", ylabel=label), label)


def final_metrics(
    cfg: TrainConfig, model: nn.Module, splits: Splits, history: History, run: RunFolder
) -> dict:
    """The selected epoch's validation scores, then the test split scored once, without and with TTA;
    writes loss.png, accuracy.png, confusion_test.png and calibration_test.png."""
    save_curves(history, run)
    device = next(model.parameters()).device
    selected = history.best("val_acc", "max") if splits.val is not None and cfg.keep_best else history.last
    plain = evaluate_model(model, splits.test, device=device, amp=cfg.amp)
    tta = evaluate_model(
        model, splits.test, device=device, tta=True, translate=cfg.tta_translate, amp=cfg.amp
    )
    save_evaluation_plots(tta, splits.classes, run.path, "test", title=f"{splits.dataset}, test (TTA)")
    val = {k: selected[k] for k in ("val_acc", "val_loss") if k in selected}
    return {
        **val,
        "selected_epoch": int(selected["epoch"]),
        "epochs_trained": int(history.last["epoch"]),
        "test_acc": plain["acc"],
        "test_acc_tta": tta["acc"],
        "test_loss": plain["loss"],
        "test_ece": plain["ece"],
        "test_ece_tta": tta["ece"],
        "per_class_acc": dict(zip(splits.classes, plain["per_class_acc"], strict=True)),
    }


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train per the flags in ``argv``; returns model_info (with its final metrics). ``callbacks`` go to
    the loop (the tests kill a run from one)."""
    cfg = project.parse_train_config(TrainConfig, argv, run_of, quick=QUICK)
    run = run_of(cfg)
    device = project.start_training(cfg, run)  # joins torchrun's processes, if any
    splits = load_data(cfg)
    if is_main_process():
        print(
            f"{splits.dataset}: {splits.sizes()} on {describe_device(device)}\n  from {splits.train.source}"
        )
    mean, std = channel_stats(splits.train.x)
    kwargs: dict[str, Any] = {
        "mean": mean,
        "std": std,
        **({"widths": list(cfg.widths)} if cfg.widths else {}),
    }
    model = build_model(cfg.model, len(splits.classes), splits.image_shape[0], **kwargs)
    if hasattr(model, "init_whitening"):
        model.init_whitening(splits.train.x[:5000])
    model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)

    train_batches, val_batches = make_loaders(cfg, splits, device)
    optimizer = airbench_sgd(
        model, cfg.batch_size, recipe_value(cfg.model, "lr", cfg.lr), cfg.momentum,
        recipe_value(cfg.model, "weight_decay", cfg.weight_decay),
        recipe_value(cfg.model, "bias_scaler", cfg.bias_scaler),
    )  # fmt: skip
    lr_factor = triangle(math.ceil(cfg.num_epochs * len(train_batches)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    amp_dtype = resolve_amp_dtype(cfg.amp, device)

    def validate(net: nn.Module) -> dict[str, float]:
        if val_batches is None:
            return {}
        scores = evaluate(net, loss_fn, val_batches, device, amp_dtype=amp_dtype)
        return {f"val_{k}": v for k, v in scores.items()}

    selection = Selection("val_acc", keep_best=cfg.keep_best, patience=cfg.patience) if val_batches else None
    state = train_loop(
        model, optimizer, train_batches, loss_fn=loss_fn, device=device, budget=Budget(epochs=cfg.num_epochs),
        evaluation=Evaluation(validate), schedule=lambda step, used: lr_factor(step), selection=selection,
        amp=cfg.amp, run=run, resume=cfg.resume, config=cfg, callbacks=callbacks,
    )  # fmt: skip
    info: dict[str, Any] = {}
    if is_main_process():
        metrics = final_metrics(cfg, model, splits, state.history, run)
        info = model_info(cfg, splits, kwargs, metrics)
        run.write_info(info)
        scores = f"test accuracy {metrics['test_acc']:.4f}, with TTA {metrics['test_acc_tta']:.4f}"
        if "val_acc" in metrics:
            scores = (
                f"validation accuracy {metrics['val_acc']:.4f} (epoch {metrics['selected_epoch']}); {scores}"
            )
        print(f"{scores}; in {run.path}")
    cleanup_distributed()
    return info
