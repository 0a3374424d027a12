"""The training loop of lesson 04, grown up: ``train_one_epoch``, ``evaluate`` and ``fit``.

``train_one_epoch`` is the loop you wrote by hand (forward, loss, backward, step) plus mixed
precision and gradient clipping; ``evaluate`` is its no-grad twin; ``fit`` runs them epoch after
epoch and adds LR schedules, early stopping, a metrics CSV, TensorBoard and checkpoints that resume.

The same code runs in one process or in many: launched with ``torchrun --nproc_per_node N``, call
``setup_distributed()`` first, build loaders with ``make_loader`` (each process gets its share of
every global batch) and ``fit`` wraps the model in DistributedDataParallel, averages the metrics over
all processes, and lets only process 0 print, write files and save checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.config import config_to_dict
from dlkit.device import autocast_dtype, get_device
from dlkit.metrics import CSVLogger, EpochMeter
from dlkit.progress import progress as progress_bar

__all__ = [
    "EarlyStopping",
    "History",
    "TensorBatches",
    "cleanup_distributed",
    "evaluate",
    "fit",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "make_loader",
    "resolve_amp_dtype",
    "setup_distributed",
    "train_one_epoch",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, dict[str, float]], bool | None]


# --- One process or many --------------------------------------------------------------------------


def setup_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the process group when launched by torchrun, and return the device this process uses.

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this joins nothing and returns
    ``get_device(device)``. Under torchrun each process uses GPU number LOCAL_RANK (backend NCCL) or,
    without a GPU or with ``device="cpu"``, the CPU (backend Gloo).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return get_device(None if device is None else str(device))
    if torch.device(device or "cuda").type == "cuda" and torch.cuda.is_available():
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return chosen


def cleanup_distributed() -> None:
    """Leave the process group (call it at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's number: 0 to world size - 1 (0 without torchrun)."""
    return dist.get_rank() if _distributed() else 0


def get_world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    return dist.get_world_size() if _distributed() else 1


def is_main_process() -> bool:
    """True on the process that prints, writes files and saves checkpoints (rank 0)."""
    return get_rank() == 0


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


# --- Data ------------------------------------------------------------------------------------------


def _on_accelerator(dataset: Dataset[Any]) -> bool:
    return isinstance(dataset, TensorDataset) and dataset.tensors[0].device.type != "cpu"


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader[Any]:
    """A DataLoader whose ``batch_size`` is the GLOBAL batch, in one process or under torchrun.

    In one process this is ``DataLoader(dataset, batch_size, shuffle=shuffle)``: shuffling draws from
    torch's global RNG (seed it with ``seed_everything``; ``fit``'s checkpoints save and restore it).
    Under torchrun a DistributedSampler(shuffle, seed) deals each of the N processes its own
    ``batch_size // N`` samples of every batch (``fit`` calls ``sampler.set_epoch`` each epoch).
    ``pin_memory=None`` pins when a CUDA GPU is there and the data is not already on it.
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available() and not _on_accelerator(dataset)
    world_size = get_world_size()
    sampler = None
    if world_size > 1:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the {world_size} processes")
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        batch_size, shuffle = batch_size // world_size, False  # the sampler does the shuffling
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )


class TensorBatches:
    """(x, y) batches of tensors already on their device: a DataLoader stand-in for data that fits.

    Small datasets live on the GPU whole; indexing them there beats a DataLoader's per-sample collate
    by far. Shuffling draws from the global RNG of the data's device (which ``fit`` checkpoints, so a
    resumed run sees the same batches); ``augment`` maps a whole batch ``x`` to an augmented one.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.y), device=self.x.device) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            if order is None:  # slices are views: no copy
                x, y = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                x, y = self.x[idx], self.y[idx]
            yield (x if self.augment is None else self.augment(x)), y


# --- One epoch -------------------------------------------------------------------------------------


def resolve_amp_dtype(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``fit(amp=...)``: None = where it pays, True = bf16 at least, False = off."""
    if amp is False:
        return None
    dtype = autocast_dtype(device)
    if amp is True and dtype is None:
        return torch.bfloat16  # forced, e.g. to see bf16 on a CPU without native support
    return dtype


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def train_one_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    device: torch.device,
    epoch: int,
    *,
    scheduler: LRScheduler | None = None,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """One pass over ``loader``, one optimizer step per (x, y) batch; returns {"loss", "acc"} means.

    ``scheduler`` (when given) steps after every batch. ``amp_dtype`` runs the forward pass and the
    loss under ``torch.autocast``; ``scaler`` (needed for float16 only) scales the loss so that small
    gradients do not underflow. ``clip_grad_norm`` rescales the gradients so that their global norm
    is at most that. "acc" is there when the model outputs (B, C) logits for (B,) class ids.
    Under DDP the means are over every process's samples. ``epoch`` labels the progress bar.
    """
    model.train()
    meter = EpochMeter(device)
    batches = progress_bar(loader, desc=f"epoch {epoch}") if progress else loader
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            y_hat = model(x)
            loss = loss_fn(y_hat, y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        else:
            loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)  # skips the step when a gradient is inf/nan
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        meter.update(loss, y_hat, y)
    _all_reduce_sum(meter.sums)
    return meter.compute()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    loader: Iterable[Any],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    all_reduce: bool = True,
) -> dict[str, float]:
    """Mean loss (and accuracy, for class logits) of ``model`` over ``loader``, without gradients.

    Under DDP every process must call it (the sums are added over processes); pass
    ``all_reduce=False`` when only one process evaluates.
    """
    model.eval()
    meter = EpochMeter(device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp_dtype):
            y_hat = model(x)
            loss = loss_fn(y_hat, y)
        meter.update(loss, y_hat, y)
    if all_reduce:
        _all_reduce_sum(meter.sums)
    return meter.compute()


# --- fit -------------------------------------------------------------------------------------------


@dataclass
class History:
    """What ``fit`` measured: one row per epoch (epoch, train_loss, train_acc, val_loss, val_acc, lr,
    seconds), ready for ``dlkit.plots.plot_history(history.rows)``."""

    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, float]:
        """The row of the last epoch."""
        if not self.rows:
            raise ValueError("no epoch has finished yet")
        return self.rows[-1]

    def best(self, metric: str, mode: Literal["min", "max"] = "min") -> dict[str, float]:
        """The row with the lowest (``mode="min"``) or highest (``"max"``) value of ``metric``."""
        rows = [r for r in self.rows if metric in r and not math.isnan(r[metric])]
        if not rows:
            raise KeyError(
                f"no epoch recorded {metric!r}; recorded: {sorted(self.rows[0]) if self.rows else []}"
            )
        return (min if mode == "min" else max)(rows, key=lambda r: r[metric])

    def column(self, metric: str) -> list[float]:
        """The values of ``metric``, one per epoch, e.g. for ``plot_curves``."""
        return [r[metric] for r in self.rows]


@dataclass
class EarlyStopping:
    """Stop when the monitored metric has not improved for ``patience`` epochs in a row."""

    patience: int
    mode: Literal["min", "max"] = "min"
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def step(self, value: float, epoch: int) -> bool:
        """Record this epoch's ``value``; True when training should stop."""
        improved = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= max(self.patience, 1)  # patience 0 acts as 1, as in Keras
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def _monitored(row: dict[str, float], monitor: str) -> float:
    if monitor not in row:
        raise KeyError(f"monitor={monitor!r} is not measured; this run measures {sorted(row)}")
    return row[monitor]


def _format_row(row: dict[str, float], num_epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{num_epochs}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("_loss", "_acc"))]
    return "  ".join([*parts, f"lr {row['lr']:.3g}", f"{row['seconds']:.1f}s"])


def _set_epoch(loader: Iterable[Any] | None, epoch: int) -> None:
    """A DistributedSampler shuffles with (seed, epoch): tell it the epoch, or every epoch looks alike."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # type: ignore[union-attr]


class _RunLog:
    """What process 0 writes after each epoch: a printed line, metrics.csv and TensorBoard scalars."""

    def __init__(self, run_dir: Path | None, tensorboard: bool, verbose: bool, num_epochs: int) -> None:
        if tensorboard and run_dir is None:
            raise ValueError("tensorboard=True needs a run_dir to write to")
        self.verbose, self.num_epochs = verbose and is_main_process(), num_epochs
        self.csv, self.writer = None, None
        if run_dir is not None and is_main_process():
            self.csv = CSVLogger(run_dir / "metrics.csv", append=False)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter  # imported only when used: it is slow

                self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def print(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def restore(self, rows: list[dict[str, float]]) -> None:
        """Rewrite metrics.csv from a checkpoint's history, so that no epoch is in it twice."""
        for row in rows:
            if self.csv is not None:
                self.csv.log(row)

    def log(self, row: dict[str, float]) -> None:
        self.print(_format_row(row, self.num_epochs))
        if self.csv is not None:
            self.csv.log(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    loss_fn: LossFn,
    num_epochs: int,
    device: torch.device | str,
    scheduler: LRScheduler | None = None,
    scheduler_interval: Literal["epoch", "batch"] = "epoch",
    amp: bool | None = None,
    clip_grad_norm: float | None = None,
    early_stopping_patience: int | None = None,
    monitor: str = "val_loss",
    monitor_mode: Literal["min", "max"] | None = None,
    run_dir: str | Path | None = None,
    tensorboard: bool = False,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    config: Any = None,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    verbose: bool = True,
) -> History:
    """Train ``model`` for ``num_epochs`` epochs, evaluating on ``val_loader`` after each; return History.

    - ``scheduler`` steps after every batch (``scheduler_interval="batch"``) or every epoch; a
      ReduceLROnPlateau steps each epoch with the ``monitor`` metric.
    - ``amp``: None = bf16 autocast where ``dlkit.device.autocast_dtype`` says it pays, True = force
      it (bf16 even on CPU), False = off. A GradScaler is used only with float16.
    - ``early_stopping_patience``: stop after that many epochs without improvement of ``monitor``
      (``monitor_mode`` defaults to "max" for accuracies, "min" otherwise).
    - ``run_dir`` gets metrics.csv (one row per epoch, rewritten from the start or from the restored
      history) and, with ``tensorboard=True``, TensorBoard logs in run_dir/tensorboard.
    - ``checkpoint_path`` is saved at the end of every epoch (before the callbacks run); with
      ``resume=True`` an existing one is restored (weights, optimizer, scheduler, RNG states, history,
      early stopping) and training continues with the next epoch, as if it had never stopped.
    - ``config``: a dict or dataclass saved in the checkpoint (as plain types).
    - ``callbacks``: ``cb(epoch, row)`` after each epoch, in every process; returning True stops.
    - ``progress``: progress bars (None = on, on process 0, when ``dlkit.progress`` shows them).

    Epochs are counted from 1 in rows, callbacks and checkpoints. The model is moved to ``device``.
    """
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', not {scheduler_interval!r}")
    if scheduler_interval == "batch" and isinstance(scheduler, ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau needs a metric, so it steps once per epoch")
    ckpt_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if resume and ckpt_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    device = torch.device(device)
    model.to(device)
    amp_dtype = resolve_amp_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    mode = monitor_mode or ("max" if monitor.endswith("acc") else "min")
    stopper = EarlyStopping(early_stopping_patience, mode) if early_stopping_patience is not None else None
    uses_monitor = stopper is not None or isinstance(scheduler, ReduceLROnPlateau)
    if uses_monitor and val_loader is None and monitor.startswith("val_"):
        raise ValueError(f"monitor={monitor!r} needs a val_loader (or monitor a train_ metric)")
    config_dict = config_to_dict(config) if dataclasses.is_dataclass(config) else config
    log = _RunLog(Path(run_dir) if run_dir is not None else None, tensorboard, verbose, num_epochs)

    history, start = History(), 0
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(
            ckpt_path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler
        )
        start, history.rows = state["epoch"], list(state["history"])
        if stopper is not None and state.get("early_stopping"):
            stopper.load_state_dict(state["early_stopping"])
        log.print(f"resumed from {ckpt_path} after epoch {start}")
    log.restore(history.rows)
    if stopper is not None and stopper.stopped:  # it had stopped early before it was saved
        log.close()
        return history

    train_model = model
    if _distributed() and not isinstance(model, DistributedDataParallel):
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    show_progress = progress is not False and is_main_process()

    for index in range(start, num_epochs):
        epoch = index + 1
        _set_epoch(train_loader, index)
        _set_epoch(val_loader, index)
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]  # the lr this epoch starts with
        train = train_one_epoch(
            train_model,
            loss_fn,
            optimizer,
            train_loader,
            device,
            epoch,
            scheduler=scheduler if scheduler_interval == "batch" else None,
            amp_dtype=amp_dtype,
            scaler=scaler,
            clip_grad_norm=clip_grad_norm,
            progress=show_progress,
        )
        row: dict[str, float] = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()}}
        if val_loader is not None:
            val = evaluate(model, loss_fn, val_loader, device, amp_dtype=amp_dtype)
            row.update({f"val_{k}": v for k, v in val.items()})
        row.update(lr=lr, seconds=time.perf_counter() - t0)
        history.rows.append(row)

        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(_monitored(row, monitor))
        elif scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        stop = stopper.step(_monitored(row, monitor), epoch) if stopper is not None else False

        log.log(row)
        if ckpt_path is not None and is_main_process():
            save_checkpoint(
                ckpt_path,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                epoch=epoch,
                history=history.rows,
                early_stopping=stopper.state_dict() if stopper is not None else None,
                config=config_dict,
            )
        if _distributed():
            dist.barrier()  # the others wait until process 0 has saved

        for callback in callbacks:
            stop = bool(callback(epoch, row)) or stop
        if stop:
            if stopper is not None and stopper.stopped:
                log.print(f"early stopping: {monitor} has not improved since epoch {stopper.best_epoch}")
            break

    log.close()
    return history
