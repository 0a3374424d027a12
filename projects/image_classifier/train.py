"""Train an image classifier with ``dlkit.train.fit`` and leave a complete run folder behind.

    python -m projects.image_classifier train --dataset cifar10_jpeg --model resnet_small --num-epochs 10
    python -m projects.image_classifier train --run-name cifar10_jpeg-resnet_small --resume  # after a kill

The run folder (default ``runs/image_classifier/<run_name>/``, under ``$DLKIT_RUNS`` when set) holds
config.json, metrics.csv (one row per epoch), loss.png, accuracy.png, confusion.png, checkpoint.pt
(saved after every epoch: ``--resume`` continues a killed run) and model_info.json, which says how to
rebuild the model and what its inputs are; :func:`load_trained` turns the folder back into a model.

The recipe is airbench94's (Keller Jordan's cifar10-airbench) as far as ``fit`` allows: Nesterov SGD
with its decoupled learning rate and weight decay (per 1024 examples), 64x the learning rate for the
BatchNorm shifts, label smoothing 0.2, a triangular schedule, and flips plus 2-pixel translations done
a batch at a time. ``fast.py`` adds the rest (lookahead, alternating flips, torch.compile).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.checkpoint import load_checkpoint
from dlkit.config import build_parser, load_config, parse_config, save_config
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.lesson import runs_root
from dlkit.plots import plot_curves, save_figure
from dlkit.train import History, fit
from projects.image_classifier.data import BatchLoader, Splits, channel_stats, load_splits
from projects.image_classifier.models import build_model

__all__ = ["TrainConfig", "airbench_sgd", "load_trained", "main", "run_dir_of", "triangle"]

# Per model, in airbench's decoupled form (see airbench_sgd): learning rate and weight decay per 1024
# examples, and the learning-rate multiplier of BatchNorm parameters. resnet_small's are airbench94's;
# resnet18's: 2/3 of the usual lr 0.1 at batch 128 (momentum 0.9), scaled linearly with the batch, and
# the usual weight decay 5e-4 (neither tuned here).
RECIPES: dict[str, dict[str, float]] = {
    "resnet_small": {"lr": 11.5, "weight_decay": 0.0153, "bias_scaler": 64.0},
    "resnet18": {"lr": 6.0, "weight_decay": 0.003, "bias_scaler": 1.0},
}


@dataclass
class TrainConfig:
    """Train an image classifier; every field is a flag (--num-epochs, --image-folder, ...)."""

    dataset: str = field(default="cifar10_jpeg", metadata={"help": "cifar10, cifar10_jpeg or fashion_mnist"})
    image_folder: str | None = field(default=None, metadata={"help": "a folder of class subfolders instead"})
    image_size: int = field(default=32, metadata={"help": "images of --image-folder are resized to this"})
    model: str = field(default="resnet_small", metadata={"help": "resnet_small or resnet18"})
    widths: tuple[int, ...] = field(
        default=(), metadata={"help": "resnet_small's 3 widths (default 64 256 256)"}
    )
    num_epochs: int = 10
    batch_size: int = 512
    lr: float | None = field(default=None, metadata={"help": "per 1024 examples; None: the model's recipe"})
    momentum: float = 0.85
    weight_decay: float | None = field(
        default=None, metadata={"help": "per 1024 examples, decoupled from lr"}
    )
    bias_scaler: float | None = field(default=None, metadata={"help": "lr multiplier of BatchNorm shifts"})
    label_smoothing: float = 0.2
    flip: bool = True
    translate: int = field(default=2, metadata={"help": "random shifts of up to this many pixels"})
    cutout: int = field(default=0, metadata={"help": "side of a zeroed square per image (0: none)"})
    tta_translate: int = field(default=1, metadata={"help": "test-time views shifted by this (0: flip only)"})
    amp: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where it pays)"})
    channels_last: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    run_name: str = field(default="", metadata={"help": "default: <dataset>-<model>"})
    runs_dir: str = field(default="", metadata={"help": "default: $DLKIT_RUNS/image_classifier or runs/..."})
    resume: bool = field(default=False, metadata={"help": "continue the run folder's checkpoint"})
    quick: bool = field(default=False, metadata={"help": "tiny subsets, one epoch: seconds on a CPU"})
    device: str = "auto"
    seed: int = 0


QUICK = {"num_epochs": 1, "train_subset": 512, "test_subset": 256, "batch_size": 128, "widths": (16, 32, 32)}


def run_dir_of(cfg: TrainConfig) -> Path:
    name = cfg.run_name or f"{'image_folder' if cfg.image_folder else cfg.dataset}-{cfg.model}"
    return (Path(cfg.runs_dir) if cfg.runs_dir else runs_root() / "image_classifier") / name


def triangle(total_steps: int, start: float = 0.2, peak: float = 1.0, end: float = 0.07, at: float = 0.23):
    """airbench's schedule: the lr factor rises linearly from ``start`` to ``peak`` at fraction ``at``
    of training, then falls linearly to ``end``."""

    def factor(step: int) -> float:
        t, top = min(step, total_steps), max(int(at * total_steps), 1)
        if t < top:
            return start + (peak - start) * t / top
        return peak + (end - peak) * (t - top) / max(total_steps - top, 1)

    return factor


def airbench_sgd(
    model: nn.Module, batch_size: int, lr: float, momentum: float, weight_decay: float, bias_scaler: float
) -> torch.optim.SGD:
    """Nesterov SGD with airbench's decoupled hyperparameters, for a loss averaged over the batch.

    ``lr`` and ``weight_decay`` are per 1024 examples and divided by 1 + 1/(1 - momentum), the factor
    by which momentum lengthens steps, so each can be tuned on its own (see Page, "How to train your
    ResNet 5"). BatchNorm shifts learn ``bias_scaler`` times faster but decay at the same rate.
    """
    kilostep = 1 + 1 / (1 - momentum)
    step_lr = lr * batch_size / 1024 / kilostep
    decay = weight_decay * batch_size / 1024 / kilostep  # the fraction of each weight removed per step
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norm_ids = {id(p) for m in norms for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    norm_params = [p for p in trainable if id(p) in norm_ids]
    other_params = [p for p in trainable if id(p) not in norm_ids]
    bias_lr = step_lr * bias_scaler
    groups = [  # the first group's lr is the one fit logs
        {"params": other_params, "lr": step_lr, "weight_decay": decay / step_lr},
        {"params": norm_params, "lr": bias_lr, "weight_decay": decay / bias_lr},
    ]
    return torch.optim.SGD(groups, lr=step_lr, momentum=momentum, nesterov=True)


def _config_from_argv(argv: Sequence[str] | None) -> TrainConfig:
    """The flags; with --resume, the run folder's saved config.json with only the given flags replaced."""
    cfg = parse_config(TrainConfig, argv, quick=QUICK)
    saved = run_dir_of(cfg) / "config.json"
    if cfg.resume and saved.exists():
        given = vars(build_parser(TrainConfig).parse_args(argv))
        cfg = dataclasses.replace(load_config(TrainConfig, saved), **given)
    return cfg


def model_kwargs_of(cfg: TrainConfig, splits: Splits) -> dict[str, Any]:
    mean, std = channel_stats(splits.train.x)
    kwargs: dict[str, Any] = {"mean": mean, "std": std}
    if cfg.widths:
        kwargs["widths"] = list(cfg.widths)
    return kwargs


def model_info(name: str, splits: Splits, kwargs: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """What export, predict and serve need to rebuild model ``name`` and feed it (see models.py)."""
    C, H, W = splits.image_shape
    return {
        "model": name,
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
        "metrics": metrics,
    }


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a run folder (in eval mode, on ``device``) and its model_info.json."""
    run_dir = Path(run_dir)
    if not (run_dir / "model_info.json").exists() or not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished run folder: no model_info.json or checkpoint.pt"
        )
    info = json.loads((run_dir / "model_info.json").read_text())
    model = build_model(info["model"], info["num_classes"], info["in_channels"], **info["model_kwargs"])
    load_checkpoint(run_dir / "checkpoint.pt", model=model, restore_rng=False)
    return model.to(device).eval(), info


def save_plots(history: History, run_dir: Path) -> None:
    for metric, label in (("loss", "loss"), ("acc", "accuracy")):
        curves = {f"{split} {label}": history.column(f"{split}_{metric}") for split in ("train", "val")}
        fig = plot_curves(curves, title=f"{label} per epoch", xlabel="epoch", ylabel=label)
        save_figure(fig, run_dir / f"{label}.png")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_loaders(cfg: TrainConfig, splits: Splits, device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    """The whole dataset moves to the device; augmentation is a few tensor ops per batch."""
    x_train, y_train = splits.train.x.to(device), splits.train.y.to(device)
    train_loader = BatchLoader(
        x_train, y_train, cfg.batch_size, shuffle=True, flip=cfg.flip, translate=cfg.translate,
        cutout=cfg.cutout, drop_last=len(y_train) > cfg.batch_size, channels_last=cfg.channels_last,
    )  # fmt: skip
    x_test, y_test = splits.test.x.to(device), splits.test.y.to(device)
    return train_loader, BatchLoader(x_test, y_test, 1000, channels_last=cfg.channels_last)


def make_optimizer(
    cfg: TrainConfig, model: nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """airbench's SGD and triangular schedule; lr, weight decay and bias scaler default to RECIPES."""
    recipe = RECIPES.get(cfg.model, RECIPES["resnet18"])
    lr = cfg.lr if cfg.lr is not None else recipe["lr"]
    weight_decay = cfg.weight_decay if cfg.weight_decay is not None else recipe["weight_decay"]
    bias_scaler = cfg.bias_scaler if cfg.bias_scaler is not None else recipe["bias_scaler"]
    optimizer = airbench_sgd(model, cfg.batch_size, lr, cfg.momentum, weight_decay, bias_scaler)
    schedule = triangle(cfg.num_epochs * steps_per_epoch)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def final_metrics(
    cfg: TrainConfig, model: nn.Module, splits: Splits, history: History, run_dir: Path
) -> dict:
    """Test accuracy and ECE without and with TTA, per-class accuracy; writes the plots, confusion.png
    and calibration.png."""
    from projects.image_classifier.evaluate import evaluate_model, save_evaluation_plots

    save_plots(history, run_dir)
    device = next(model.parameters()).device
    plain = evaluate_model(model, splits.test, device=device, tta=False, amp=cfg.amp)
    tta = evaluate_model(
        model, splits.test, device=device, tta=True, translate=cfg.tta_translate, amp=cfg.amp
    )
    save_evaluation_plots(tta, splits.classes, run_dir, title=f"{splits.dataset}, test (TTA)")
    return {
        "test_acc": plain["acc"],
        "test_acc_tta": tta["acc"],
        "test_ece": plain["ece"],
        "test_ece_tta": tta["ece"],
        "test_loss": history.last.get("val_loss"),
        "per_class_acc": dict(zip(splits.classes, plain["per_class_acc"], strict=True)),
        "num_epochs": len(history.rows),
    }


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Callable[..., Any]] = ()) -> dict[str, Any]:
    """Train per the flags in ``argv``; returns model_info (with its final metrics).

    ``callbacks`` go to ``fit`` (``cb(epoch, row)`` after each epoch; the tests kill a run from one).
    """
    cfg = _config_from_argv(argv)
    run_dir = run_dir_of(cfg)
    seed_everything(cfg.seed)
    device = get_device(cfg.device)
    splits = load_splits(
        cfg.dataset, image_folder=cfg.image_folder, image_size=cfg.image_size,
        train_subset=cfg.train_subset, test_subset=cfg.test_subset, seed=cfg.seed,
    )  # fmt: skip
    sizes = f"{len(splits.train):,} train, {len(splits.test):,} test images"
    print(f"{splits.dataset}: {sizes} on {describe_device(device)}")
    kwargs = model_kwargs_of(cfg, splits)
    model = build_model(cfg.model, len(splits.classes), splits.image_shape[0], **kwargs)
    if hasattr(model, "init_whitening"):
        model.init_whitening(splits.train.x[:5000])
    model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.json")
    _write_json(run_dir / "model_info.json", model_info(cfg.model, splits, kwargs, {}))  # metrics: at the end

    train_loader, test_loader = make_loaders(cfg, splits, device)
    optimizer, scheduler = make_optimizer(cfg, model, len(train_loader))
    history = fit(
        model, optimizer, train_loader, test_loader,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), num_epochs=cfg.num_epochs,
        device=device, scheduler=scheduler, scheduler_interval="batch", amp=cfg.amp, run_dir=run_dir,
        checkpoint_path=run_dir / "checkpoint.pt", resume=cfg.resume, config=cfg, callbacks=callbacks,
    )  # fmt: skip
    metrics = final_metrics(cfg, model, splits, history, run_dir)
    info = model_info(cfg.model, splits, kwargs, metrics)
    _write_json(run_dir / "model_info.json", info)
    print(f"test accuracy {metrics['test_acc']:.4f}, with TTA {metrics['test_acc_tta']:.4f}; in {run_dir}")
    return info


if __name__ == "__main__":
    main()
