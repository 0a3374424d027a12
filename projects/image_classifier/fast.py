"""The fast path: airbench94's recipe (Keller Jordan, cifar10-airbench) on ``dlkit.train.train_loop``.

    python -m projects.image_classifier fast --runs 5                  # seconds per run on one GPU
    python -m projects.image_classifier fast --dataset cifar10_jpeg    # the JPEG copy, when you have it
    python -m projects.image_classifier fast --quick                   # a tiny run on the CPU, offline

What makes it fast, compared with ``train``:

- the whole dataset lives on the device, and augmentation is tensor ops on all of it at once
  (``dlkit.augment``): images are flipped at random once, then the whole set is mirrored every other
  epoch (airbench's "alternating flip"), and every epoch shifts each image by up to 2 pixels; the
  loop gets this as a function ``epoch -> batches``;
- bf16 autocast where the hardware runs it fast, channels_last tensors, and ``torch.compile`` on CUDA
  (compiled once, then reused by every run: :func:`reset_model` re-initialises the weights in place);
- the airbench94 network (``resnet_small``), Nesterov SGD with decoupled hyperparameters, label
  smoothing, a lookahead average of the weights (from epoch 3, every 5 steps, with a decay that
  grows to 0.95**5 by the end: :class:`Lookahead`, a loop callback), the whitening layer's bias
  trained for 3 epochs only;
- test-time augmentation over the mirror image and 1-pixel shifts.

Timing follows airbench: the clock runs during whitening init, training and the final TTA evaluation,
not during the per-epoch evaluations, loading, or compilation (a warm-up run on random labels). The
per-epoch accuracy is airbench's progress line and is scored on the test split by default, as
airbench does; it picks nothing (no keep-best, no early stopping: the run ends on its last weights).
``--val-fraction 0.1`` holds out a validation split and shows that instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from dlkit.augment import flip_lr, random_translate, tta_logits
from dlkit.config import flag, parse_config
from dlkit.device import autocast, describe_device, get_device, resolve_amp_dtype, seed_everything
from dlkit.train import Budget, Callback, Evaluation, LoopState, TensorBatches, train_loop
from projects.image_classifier.data import DATASETS, Splits, channel_stats, load_splits, quick_dataset
from projects.image_classifier.models import build_model
from projects.image_classifier.recipe import airbench_sgd, triangle

__all__ = [
    "DeviceData",
    "FastConfig",
    "Lookahead",
    "main",
    "make_model",
    "reset_model",
    "run_many",
    "summary",
    "to_device",
    "train_fast",
    "warm_up",
]


@dataclass
class FastConfig:
    """airbench94's recipe, timed as airbench times it; lr and weight decay are per 1024 examples."""

    dataset: str = flag(
        "cifar10", help="cifar10 (official), cifar10_jpeg, fashion_mnist or digits", choices=DATASETS
    )
    widths: tuple[int, ...] = flag((64, 256, 256), help="resnet_small's 3 widths", min=1)
    # airbench94 trains 9.9 epochs on the official CIFAR-10; on the JPEG copy that gave 90.46% +- 0.17
    # (n=5, one H100), 12 epochs 90.77% +- 0.15 in 3.66 s (benchmarks/results/cifar10_speed_h100_*.txt).
    num_epochs: float = flag(12.0, help="passes over the training images (may be fractional)", above=0)
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = flag(64.0, help="lr multiplier of BatchNorm shifts", above=0)
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = flag(3, help="epochs the whitening layer's bias trains")
    ema_start_epochs: int = flag(3, help="epochs before the lookahead starts")
    ema_every_steps: int = flag(5, help="steps between lookahead updates", min=1)
    ema_decay_base: float = flag(0.95, help="lookahead decay per step at the end", above=0, max=1)
    ema_decay_pow: float = flag(3.0, help="how the decay grows over training: (step/total)**pow")
    flip: bool = flag(True, help="random flips, then alternating flips every other epoch")
    translate: int = flag(2, help="random shifts of up to this many pixels", max=8)
    tta_translate: int = flag(1, help="TTA shift in pixels (0: mirror only)", max=4)
    val_fraction: float = flag(
        0.0, help="hold out this share of training images and show their accuracy per epoch", min=0, max=0.5
    )
    eval_every_epoch: bool = flag(True, help="untimed accuracy after each epoch")
    amp: bool | None = flag(None, help="bf16 autocast (default: where the hardware runs it fast)")
    compile: bool | None = flag(None, help="torch.compile (default: on CUDA)")
    compile_mode: str = flag("default", help="torch.compile's mode", choices=("default", "max-autotune"))
    runs: int = flag(1, help="repeat with seeds seed, seed+1, ...", min=1)
    train_subset: int | None = None
    test_subset: int | None = None
    quick: bool = flag(False, help="a tiny run on data that needs no download: seconds on a CPU")
    device: str = flag(
        "auto", help="auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps or gpu"
    )
    seed: int = 0
    threads: int = 0


QUICK = {
    "num_epochs": 1.0,
    "train_subset": 1024,
    "test_subset": 512,
    "widths": (16, 32, 32),
    "batch_size": 256,
}


@dataclass
class DeviceData:
    """Train and test tensors already on the device (images (N, C, H, W) in [0, 1]); ``x_eval``,
    ``y_eval`` are what the per-epoch line scores (the validation split when there is one)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]
    x_eval: torch.Tensor | None = None
    y_eval: torch.Tensor | None = None
    eval_name: str = "test"

    def __post_init__(self) -> None:
        if self.x_eval is None:
            self.x_eval, self.y_eval = self.x_test, self.y_test


def to_device(splits: Splits, device: torch.device, amp: bool | None = None) -> DeviceData:
    """Move the splits to ``device``. On CUDA the images are stored in the autocast dtype of ``amp``
    (bf16 where the GPU has it: half the memory traffic; float32 with ``amp=False``, which the
    float32 model then takes as is); elsewhere in float32 (the CPU autocasts per layer)."""
    dtype = (resolve_amp_dtype(amp, device) if device.type == "cuda" else None) or torch.float32
    move = lambda x: x.to(device, dtype).contiguous(memory_format=torch.channels_last)  # noqa: E731
    mean, std = channel_stats(splits.train.x)
    data = DeviceData(
        move(splits.train.x), splits.train.y.to(device), move(splits.test.x), splits.test.y.to(device),
        splits.classes, mean, std,
    )  # fmt: skip
    if splits.val is not None:
        data.x_eval, data.y_eval, data.eval_name = move(splits.val.x), splits.val.y.to(device), "val"
    return data


def make_model(cfg: FastConfig, data: DeviceData, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, the module to call): the second is compiled when asked, or by default on CUDA."""
    in_channels = data.x_train.shape[1]
    model = build_model(
        "resnet_small", len(data.classes), in_channels, widths=cfg.widths, mean=data.mean, std=data.std
    )
    model = model.to(device, memory_format=torch.channels_last)
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return model, (torch.compile(model, mode=cfg.compile_mode) if use_compile else model)


def reset_model(model: nn.Module) -> None:
    """Fresh weights in place (so that a compiled model is reused), as if it had just been built."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()  # BatchNorm also resets its running statistics
    nn.init.zeros_(model.whiten.bias)


class Lookahead(Callback):
    """airbench's lookahead as a loop callback: from epoch ``start_epochs`` on, every ``every`` steps the
    weights move to an average of their recent values, with a decay of ``base**every * (step /
    total)**pow``; the last step of each epoch (and of the run) ends on the average itself. It also
    stops training the whitening bias after ``whiten_steps`` steps. No ``.item()``: nothing waits."""

    def __init__(self, model: nn.Module, cfg: FastConfig, steps_per_epoch: int, total_steps: int) -> None:
        self.model, self.cfg = model, cfg
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.whiten_steps = cfg.whiten_bias_epochs * steps_per_epoch
        self.average: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, decay: float) -> None:
        state = self.model.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}
        for key, average in self.average.items():
            average.lerp_(state[key], 1 - decay)
            state[key].copy_(average)  # back into the network, as the Lookahead optimizer does

    def on_step(self, state: LoopState) -> None:
        cfg, step = self.cfg, state.step
        if state.epoch >= cfg.ema_start_epochs and step % cfg.ema_every_steps == 0:
            # The decay grows over training: move fast early, average strongly at the end.
            decay = cfg.ema_decay_base**cfg.ema_every_steps * (step / self.total_steps) ** cfg.ema_decay_pow
            self.update(decay)
        if self.average is not None and (step % self.steps_per_epoch == 0 or step >= self.total_steps):
            self.update(decay=1.0)  # end each epoch on the averaged weights
        if step == self.whiten_steps:
            self.model.whiten.bias.requires_grad_(False)


def epoch_images(base: torch.Tensor, epoch: int, cfg: FastConfig) -> torch.Tensor:
    """Epoch ``epoch``'s view of the (already randomly flipped) training images (N, C, H, W)."""
    x = random_translate(base, cfg.translate) if cfg.translate else base
    if cfg.flip and epoch % 2 == 1:  # alternating flip: every image is seen both ways in two epochs
        x = x.flip(-1)
    return x


@torch.no_grad()
def accuracy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, amp_dtype: torch.dtype | None, tta: bool, translate: int
) -> float:
    net.eval()
    with autocast(x.device, amp_dtype):
        logits = [
            tta_logits(net, batch, translate=translate) if tta else net(batch) for batch in x.split(2000)
        ]  # each (B, K)
    return (torch.cat(logits).argmax(1) == y).float().mean().item()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_fast(
    cfg: FastConfig, data: DeviceData, model: nn.Module, net: nn.Module, *, verbose: bool = True
) -> dict[str, Any]:
    """One airbench run of ``model`` (called through ``net``, maybe compiled); returns its TTA test
    accuracy, timed seconds, and the loop's rows (one per epoch: timed seconds, untimed accuracy)."""
    device = data.x_train.device
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    reset_model(model)
    num_train, steps_per_epoch = len(data.y_train), len(data.y_train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {num_train} training images")
    total_steps = math.ceil(cfg.num_epochs * steps_per_epoch)
    # Before the optimizer is made, which takes only parameters that require grad: the previous run
    # (or the warm-up) ended with the whitening bias frozen.
    model.whiten.bias.requires_grad_(cfg.whiten_bias_epochs > 0)
    optimizer = airbench_sgd(model, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_scaler)
    lr_factor = triangle(total_steps)

    _sync(device)
    t0 = time.perf_counter()  # timed: the whitening init and the first random flip
    model.init_whitening(data.x_train[:5000])
    base = flip_lr(data.x_train) if cfg.flip else data.x_train  # flipped at random once
    _sync(device)
    init_seconds = time.perf_counter() - t0

    def batches(epoch: int) -> TensorBatches:  # sized: the loop knows when an epoch is complete
        x_epoch = epoch_images(base, epoch, cfg)
        return TensorBatches(x_epoch, data.y_train, cfg.batch_size, shuffle=True, drop_last=True)

    def scores(module: nn.Module) -> dict[str, float]:  # untimed: the loop's clock stops for it
        if not cfg.eval_every_epoch:
            return {}
        acc = accuracy(module, data.x_eval, data.y_eval, amp_dtype, tta=False, translate=0)
        return {f"{data.eval_name}_acc": acc}

    state = train_loop(
        model, optimizer, batches, loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        device=device, budget=Budget(steps=total_steps), evaluation=Evaluation(scores),
        schedule=lambda step, used: lr_factor(step), amp=cfg.amp,
        callbacks=[Lookahead(model, cfg, steps_per_epoch, total_steps)], net=net, progress=False,
        verbose=verbose,
    )  # fmt: skip

    _sync(device)
    t0 = time.perf_counter()  # timed: the final evaluation with TTA
    tta_acc = accuracy(net, data.x_test, data.y_test, amp_dtype, tta=True, translate=cfg.tta_translate)
    _sync(device)
    seconds = init_seconds + state.seconds + time.perf_counter() - t0
    rows = [{**row, "seconds": init_seconds + row["seconds"]} for row in state.rows]
    last = rows[-1].get(f"{data.eval_name}_acc") if rows else None
    return {"tta_acc": tta_acc, "acc": last, "seconds": seconds, "epochs": rows}


def warm_up(cfg: FastConfig, data: DeviceData, model: nn.Module, net: nn.Module) -> None:
    """Compile outside the clock: a short run on random labels (airbench's 'warmup' run)."""
    labels = torch.randint_like(data.y_train, len(data.classes))
    fake = replace(data, y_train=labels)
    epochs = min(cfg.num_epochs, cfg.whiten_bias_epochs + 1.0)  # both graphs: with and without whiten bias
    train_fast(replace(cfg, num_epochs=epochs, eval_every_epoch=False), fake, model, net, verbose=False)


def run_many(
    cfg: FastConfig, data: DeviceData, device: torch.device, model: tuple[nn.Module, nn.Module] | None = None
) -> list[dict[str, Any]]:
    """``cfg.runs`` timed runs with seeds seed, seed+1, ... after one untimed warm-up when compiling
    (skipped when ``model`` passes an already warmed-up (model, net) pair from :func:`make_model`)."""
    if model is None:
        model, net = make_model(cfg, data, device)
        if net is not model:
            warm_up(cfg, data, model, net)
    else:
        model, net = model
    results = []
    for run in range(cfg.runs):
        seed_everything(cfg.seed + run)
        result = train_fast(cfg, data, model, net)
        print(f"run {run}: TTA test accuracy {result['tta_acc']:.4f} in {result['seconds']:.2f} s")
        results.append(result)
    return results


def summary(results: Sequence[dict[str, Any]]) -> str:
    accs = torch.tensor([r["tta_acc"] for r in results], dtype=torch.float64)
    secs = torch.tensor([r["seconds"] for r in results], dtype=torch.float64)
    std = lambda t: t.std().item() if len(t) > 1 else 0.0  # noqa: E731
    return (
        f"n={len(results)}: TTA accuracy {accs.mean():.4f} +- {std(accs):.4f}, "
        f"time {secs.mean():.2f} +- {std(secs):.2f} s"
    )


def load_fast_data(cfg: FastConfig, device: torch.device) -> tuple[Splits, DeviceData]:
    """The splits the flags describe (quick mode: data found on this machine, else digits), on ``device``."""
    dataset = quick_dataset(cfg.dataset) if cfg.quick else cfg.dataset
    splits = load_splits(
        dataset, val_fraction=cfg.val_fraction, train_subset=cfg.train_subset, test_subset=cfg.test_subset
    )
    return splits, to_device(splits, device, cfg.amp)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    cfg = parse_config(FastConfig, argv, quick=QUICK)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = get_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    splits, data = load_fast_data(cfg, device)
    print(f"{splits.dataset}: {splits.sizes()} on {describe_device(device)}\n  from {splits.train.source}")
    if len(data.y_train) < cfg.batch_size:
        cfg = replace(cfg, batch_size=len(data.y_train))  # a small set (quick mode on digits): one batch
    results = run_many(cfg, data, device)
    print(summary(results))
    return results
