"""The fast path: airbench94's recipe (Keller Jordan, cifar10-airbench) on the course's building blocks.

    python -m projects.image_classifier fast --dataset cifar10 --runs 5   # seconds per run on one GPU
    python -m projects.image_classifier fast --quick                      # a tiny run on the CPU

What makes it fast, compared with ``train``:

- the whole dataset lives on the device, and augmentation is tensor ops on all of it at once
  (``dlkit.augment``): images are flipped at random once, then the whole set is mirrored every other
  epoch (airbench's "alternating flip"), and every epoch shifts each image by up to 2 pixels;
- bf16 autocast, channels_last tensors, and ``torch.compile`` on CUDA (compiled once, then reused by
  every run: :func:`reset_model` re-initialises the weights in place);
- the airbench94 network (``resnet_small``), Nesterov SGD with decoupled hyperparameters, label
  smoothing, a lookahead average of the weights (from epoch 3, every 5 steps, with a decay that
  grows to 0.95**5 by the end), the whitening layer's bias trained for 3 epochs only;
- test-time augmentation over the mirror image and 1-pixel shifts.

Timing follows airbench: the clock runs during whitening init, training and the final TTA evaluation,
not during the per-epoch evaluations, loading, or compilation (a warm-up run on random labels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from dlkit.augment import flip_lr, random_translate, tta_logits
from dlkit.config import parse_config
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.train import resolve_amp_dtype
from projects.image_classifier.data import Splits, channel_stats, load_splits
from projects.image_classifier.models import build_model
from projects.image_classifier.train import airbench_sgd, triangle

__all__ = [
    "DeviceData",
    "FastConfig",
    "main",
    "make_model",
    "reset_model",
    "run_many",
    "to_device",
    "train_fast",
    "warm_up",
]


@dataclass
class FastConfig:
    """airbench94's hyperparameters; lr and weight decay are per 1024 examples (see train.airbench_sgd)."""

    dataset: str = field(default="cifar10_jpeg", metadata={"help": "cifar10, cifar10_jpeg, fashion_mnist"})
    widths: tuple[int, ...] = (64, 256, 256)
    # airbench94 trains 9.9 epochs on the official CIFAR-10; on the JPEG copy that gave 90.46% +- 0.17
    # (n=5, one H100), 12 epochs 90.77% +- 0.15 in 3.66 s (benchmarks/results/cifar10_speed_h100_*.txt).
    num_epochs: float = 12.0
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    ema_start_epochs: int = 3
    ema_every_steps: int = 5
    ema_decay_base: float = 0.95
    ema_decay_pow: float = 3.0
    flip: bool = True
    translate: int = 2
    tta_translate: int = field(default=1, metadata={"help": "TTA shift in pixels (0: mirror only)"})
    eval_every_epoch: bool = field(default=True, metadata={"help": "untimed test accuracy after each epoch"})
    amp: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where it pays)"})
    compile: bool | None = field(default=None, metadata={"help": "torch.compile (default: on CUDA)"})
    compile_mode: str = field(default="default", metadata={"help": "or max-autotune (slower to compile)"})
    runs: int = field(default=1, metadata={"help": "repeat with seeds seed, seed+1, ..."})
    train_subset: int | None = None
    test_subset: int | None = None
    quick: bool = False
    device: str = "auto"
    seed: int = 0


QUICK = {
    "num_epochs": 1.0,
    "train_subset": 1024,
    "test_subset": 512,
    "widths": (16, 32, 32),
    "batch_size": 256,
}


@dataclass
class DeviceData:
    """Train and test tensors already on the device (images (N, C, H, W) in [0, 1])."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]


def to_device(splits: Splits, device: torch.device) -> DeviceData:
    """Move both splits to ``device``: bf16 images on CUDA (half the memory traffic), float32 on CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    move = lambda x: x.to(device, dtype).contiguous(memory_format=torch.channels_last)  # noqa: E731
    mean, std = channel_stats(splits.train.x)
    return DeviceData(
        move(splits.train.x), splits.train.y.to(device), move(splits.test.x), splits.test.y.to(device),
        splits.classes, mean, std,
    )  # fmt: skip


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


class Lookahead:
    """airbench's lookahead: every few steps the weights move to an average of their recent values."""

    def __init__(self, model: nn.Module) -> None:
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for key, average in self.average.items():
            average.lerp_(state[key], 1 - decay)
            state[key].copy_(average)  # back into the network, as the Lookahead optimizer does


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def accuracy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, amp_dtype: torch.dtype | None, tta: bool, translate: int
) -> float:
    net.eval()
    with _autocast(x.device, amp_dtype):
        logits = [
            tta_logits(net, batch, translate=translate) if tta else net(batch) for batch in x.split(2000)
        ]  # each (B, K)
    return (torch.cat(logits).argmax(1) == y).float().mean().item()


def epoch_images(base: torch.Tensor, epoch: int, cfg: FastConfig) -> torch.Tensor:
    """Epoch ``epoch``'s view of the (already randomly flipped) training images (N, C, H, W)."""
    x = random_translate(base, cfg.translate) if cfg.translate else base
    if cfg.flip and epoch % 2 == 1:  # alternating flip: every image is seen both ways in two epochs
        x = x.flip(-1)
    return x


def train_fast(
    cfg: FastConfig, data: DeviceData, model: nn.Module, net: nn.Module, *, verbose: bool = True
) -> dict[str, Any]:
    """One airbench run of ``model`` (called through ``net``, maybe compiled); returns its accuracies,
    timed seconds, and one row per epoch (cumulative timed seconds, untimed test accuracy)."""
    device = data.x_train.device
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    reset_model(model)
    num_train, steps_per_epoch = len(data.y_train), len(data.y_train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {num_train} training images")
    total_steps = math.ceil(cfg.num_epochs * steps_per_epoch)
    whiten_steps = cfg.whiten_bias_epochs * steps_per_epoch
    optimizer = airbench_sgd(model, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.bias_scaler)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, triangle(total_steps))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    lookahead, step, timed, rows = None, 0, 0.0, []

    _sync(device)
    t0 = time.perf_counter()
    model.init_whitening(data.x_train[:5000])
    base = flip_lr(data.x_train) if cfg.flip else data.x_train  # flipped at random once
    for epoch in range(math.ceil(total_steps / steps_per_epoch)):
        model.whiten.bias.requires_grad_(step < whiten_steps)
        net.train()
        x_epoch = epoch_images(base, epoch, cfg)
        order = torch.randperm(num_train, device=device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            with _autocast(device, amp_dtype):
                loss = loss_fn(net(x_epoch[idx]), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if epoch >= cfg.ema_start_epochs and step % cfg.ema_every_steps == 0:
                # The decay grows over training: move fast early, average strongly at the end.
                decay = cfg.ema_decay_base**cfg.ema_every_steps * (step / total_steps) ** cfg.ema_decay_pow
                lookahead = lookahead or Lookahead(model)
                lookahead.update(model, decay)
            if step >= total_steps:
                break
        if lookahead is not None:
            lookahead.update(model, decay=1.0)  # end each epoch on the averaged weights
        _sync(device)
        timed += time.perf_counter() - t0
        row = {"epoch": epoch + 1, "seconds": timed, "train_loss": loss.item()}
        if cfg.eval_every_epoch:  # untimed, like airbench's per-epoch lines
            row["test_acc"] = accuracy(net, data.x_test, data.y_test, amp_dtype, tta=False, translate=0)
        rows.append(row)
        if verbose:
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        _sync(device)
        t0 = time.perf_counter()

    tta_acc = accuracy(net, data.x_test, data.y_test, amp_dtype, tta=True, translate=cfg.tta_translate)
    _sync(device)
    timed += time.perf_counter() - t0
    return {"tta_acc": tta_acc, "acc": rows[-1].get("test_acc"), "seconds": timed, "epochs": rows}


def warm_up(cfg: FastConfig, data: DeviceData, model: nn.Module, net: nn.Module) -> None:
    """Compile outside the clock: a short run on random labels (airbench's 'warmup' run)."""
    labels = torch.randint_like(data.y_train, len(data.classes))
    fake = DeviceData(data.x_train, labels, data.x_test, data.y_test, data.classes, data.mean, data.std)
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


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    cfg = parse_config(FastConfig, argv, quick=QUICK)
    device = get_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    splits = load_splits(cfg.dataset, train_subset=cfg.train_subset, test_subset=cfg.test_subset)
    data = to_device(splits, device)
    sizes = f"{len(data.y_train):,} train, {len(data.y_test):,} test images"
    print(f"{splits.dataset}: {sizes} on {describe_device(device)}")
    results = run_many(cfg, data, device)
    print(summary(results))
    return results


if __name__ == "__main__":
    main()
