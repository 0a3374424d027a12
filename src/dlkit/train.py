"""The training loop of lesson 04, grown up: one loop for every lesson and project.

Three pieces, each usable alone:

- :func:`train_step` is the loop body you wrote by hand (forward, loss, backward, clip, step), with
  mixed precision; :func:`train_one_epoch` runs it over a loader, :func:`evaluate` is its no-grad twin.
- :func:`train_loop` runs steps until a :class:`Budget` is used (epochs, steps and/or seconds of
  training), evaluates on a schedule (:class:`Evaluation`: every epoch, every N steps or every S
  seconds; the clock stops while evaluating), follows an lr schedule, keeps the best weights and
  stops early (:class:`Selection`), writes metrics.csv and a checkpoint at every evaluation, and
  resumes from it exactly (:class:`dlkit.runs.RunFolder`).
- :func:`fit` is the epoch-shaped call most lessons use: train for ``num_epochs``, validate after each.

The same code runs in one process or in many: launched with ``torchrun --nproc_per_node N``, call
``setup_distributed()`` first, build loaders with ``make_loader`` (each process gets its share of
every global batch) and the loop wraps the model in DistributedDataParallel, averages the metrics over
all processes, and lets only process 0 print, write files and save checkpoints.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from dlkit.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from dlkit.config import config_to_dict
from dlkit.device import autocast, get_device, resolve_amp_dtype
from dlkit.metrics import CSVLogger, EpochMeter
from dlkit.progress import progress as progress_bar
from dlkit.runs import RunFolder

__all__ = [
    "Budget",
    "Callback",
    "Evaluation",
    "History",
    "LoopState",
    "Selection",
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
    "train_loop",
    "train_one_epoch",
    "train_step",
]

LossFn = Callable[[Any, Any], torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], bool | None]


# --- One process or many --------------------------------------------------------------------------


def setup_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the process group when launched by torchrun, and return the device this process uses.

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this joins nothing and returns
    ``get_device(device)``. Under torchrun each process uses GPU number LOCAL_RANK (backend NCCL) or,
    without a GPU or with ``device="cpu"``, the CPU (backend Gloo). The process group is left again
    by :func:`cleanup_distributed`, which also runs at exit if the script does not call it.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return get_device(None if device is None else str(device))
    wants_gpu = str(device or "auto") in ("auto", "gpu") or torch.device(str(device)).type == "cuda"
    if wants_gpu and torch.cuda.is_available():
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    if not dist.is_initialized():
        # torch.distributed.nn.functional, imported by DistributedDataParallel, evaluates
        # ``group.WORLD`` in the default arguments of ten functions when first imported. Imported after
        # the group exists, it keeps the group alive for good: destroy_process_group() then leaves
        # gloo's worker threads running, and one still freeing its last collective's tensors during
        # interpreter teardown needs the GIL, is stopped, and aborts the process after all the work
        # ("terminate called without an active exception", SIGABRT; seen under load). Imported
        # first, those defaults are None.
        importlib.import_module("torch.distributed.nn")
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        atexit.register(cleanup_distributed)
    return chosen


def cleanup_distributed() -> None:
    """Leave the process group: it is destroyed here, its threads joined (call it at the end of a
    torchrun script; it also runs at exit). Reference cycles that hold it (a DistributedDataParallel
    wrapper) are collected first."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
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
    sampler: DistributedSampler[Any] | None = None
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


# --- One step, one epoch, one evaluation ------------------------------------------------------------


def _to(batch: Any, device: torch.device) -> Any:
    """Tensors (also inside tuples and lists) moved to ``device``; anything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(_to(b, device) for b in batch)
    return batch


def _forward(model: nn.Module, x: Any) -> Any:
    """``model(x)``, or ``model(*x)`` when the inputs are a tuple (e.g. ids and offsets)."""
    return model(*x) if isinstance(x, tuple) else model(x)


def train_step(
    model: nn.Module,
    batch: tuple[Any, Any],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float | None = None,
) -> tuple[torch.Tensor, Any, Any]:
    """One optimizer step on ``batch = (x, y)`` (already on the model's device); returns (loss, y_hat, y).

    The forward pass and the loss run under autocast to ``amp_dtype``; ``scaler`` (float16 only) scales
    the loss so that small gradients do not underflow; ``clip_grad_norm`` rescales the gradients so that
    their global norm is at most that. Nothing here waits for the GPU (no ``.item()``).
    """
    x, y = batch
    with autocast(y.device if isinstance(y, torch.Tensor) else torch.device("cpu"), amp_dtype):
        y_hat = _forward(model, x)
        loss = loss_fn(y_hat, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if clip_grad_norm:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when a gradient is inf/nan
        scaler.update()
    else:
        optimizer.step()
    return loss.detach(), y_hat, y


def _batch_size(y: Any) -> int:
    return int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim else 1


def _update(meter: EpochMeter, loss: torch.Tensor, y_hat: Any, y: Any) -> None:
    if isinstance(y_hat, torch.Tensor) and isinstance(y, torch.Tensor) and y.ndim:
        meter.update(loss, y_hat.detach(), y)
    else:  # outputs that are not one tensor (a VAE's (x_hat, mu, logvar)): the loss only
        meter.classification = False
        meter.sums[0] += loss.detach() * _batch_size(y)
        meter.sums[2] += _batch_size(y)


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
    """One pass over ``loader``, one :func:`train_step` per (x, y) batch; returns {"loss", "acc"} means.

    ``scheduler`` (when given) steps after every batch. "acc" is there when the model outputs (B, C)
    logits for (B,) class ids. Under DDP the means are over every process's samples. ``epoch`` labels
    the progress bar.
    """
    model.train()
    meter = EpochMeter(device)
    batches = progress_bar(loader, desc=f"epoch {epoch}") if progress else loader
    for batch in batches:
        loss, y_hat, y = train_step(
            model, _to(batch, device), loss_fn, optimizer,
            amp_dtype=amp_dtype, scaler=scaler, clip_grad_norm=clip_grad_norm,
        )  # fmt: skip
        if scheduler is not None:
            scheduler.step()
        _update(meter, loss, y_hat, y)
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
    for batch in loader:
        x, y = _to(batch, device)
        with autocast(device, amp_dtype):
            y_hat = _forward(model, x)
            loss = loss_fn(y_hat, y)
        _update(meter, loss, y_hat, y)
    if all_reduce:
        _all_reduce_sum(meter.sums)
    return meter.compute()


# --- The loop ---------------------------------------------------------------------------------------


@dataclass
class History:
    """What the loop measured: one row per evaluation (step, epoch, seconds, lr, train_loss, ...,
    val_loss, ...), ready for ``dlkit.plots.plot_history(history.rows)``."""

    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, float]:
        """The row of the last evaluation."""
        if not self.rows:
            raise ValueError("no evaluation has happened yet")
        return self.rows[-1]

    def best(self, metric: str, mode: Literal["min", "max"] = "min") -> dict[str, float]:
        """The row with the lowest (``mode="min"``) or highest (``"max"``) value of ``metric``."""
        rows = [r for r in self.rows if metric in r and not math.isnan(r[metric])]
        if not rows:
            raise KeyError(
                f"no row recorded {metric!r}; recorded: {sorted(self.rows[0]) if self.rows else []}"
            )
        return (min if mode == "min" else max)(rows, key=lambda r: r[metric])

    def column(self, metric: str) -> list[float]:
        """The values of ``metric``, one per row, e.g. for ``plot_curves``."""
        return [r[metric] for r in self.rows]


@dataclass
class Budget:
    """When training ends: after ``epochs`` passes over the data, ``steps`` optimizer steps or
    ``seconds`` of training (the clock stops while evaluating), whichever comes first.

    ``epochs`` may be fractional (9.9 epochs = ``ceil(9.9 * steps per epoch)`` steps) when the data
    has a length. The fraction of the budget used (:meth:`used`) drives lr schedules, so a run cut by
    its time budget still ends on a fully decayed learning rate.
    """

    epochs: float | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not any((self.epochs, self.steps, self.seconds)):
            raise ValueError("a Budget needs epochs, steps and/or seconds > 0")

    def used(self, state: LoopState, steps_per_epoch: int | None) -> float:
        """The fraction used (the largest of its parts): 0 at the start, >= 1 when training is over."""
        fractions = []
        if self.steps:
            fractions.append(state.step / self.steps)
        if self.seconds:
            fractions.append(state.seconds / self.seconds)
        if self.epochs:
            if steps_per_epoch:
                fractions.append(state.step / math.ceil(self.epochs * steps_per_epoch))
            else:
                fractions.append(state.epoch / self.epochs)
        return max(fractions)


@dataclass
class Evaluation:
    """What to measure and when: ``fn(model)`` -> {"val_loss": ..., ...}, at the end of every epoch
    (the default), or every ``every_steps`` steps, or every ``every_seconds`` seconds of training; and
    always when the budget is used. ``fn`` is called off the clock, in eval mode, without gradients."""

    fn: Callable[[nn.Module], Mapping[str, float]]
    every_steps: int = 0
    every_seconds: float = 0.0


@dataclass
class Selection:
    """Which evaluations win: the lowest ``monitor`` (``mode="min"``; "max" for accuracies, the default
    for names ending in "acc"). ``keep_best`` ends the run on the weights of the best evaluation;
    ``patience`` stops after that many evaluations without improvement."""

    monitor: str = "val_loss"
    mode: Literal["min", "max"] | None = None
    keep_best: bool = False
    patience: int | None = None

    def better(self, value: float, best: float | None) -> bool:
        mode = self.mode or ("max" if self.monitor.endswith("acc") else "min")
        return best is None or (value < best if mode == "min" else value > best)


@dataclass
class LoopState:
    """Where a run is; saved in every checkpoint (as plain types), restored by ``resume``."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # passes over the data finished
    seconds: float = 0.0  # training time; evaluations excluded
    examples: int = 0  # training examples (or tokens' windows) seen
    rows: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the best one
    stopped_early: bool = False
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # with keep_best

    @property
    def history(self) -> History:
        return History(self.rows)

    def plain(self) -> dict[str, Any]:
        state = asdict(self) | {"best_weights": None}
        del state["best_weights"]
        return state


class Callback:
    """Hooks into :func:`train_loop`; override what you need. ``on_eval`` returning True stops the run.

    ``on_step`` runs after every optimizer step (keep it cheap: no ``.item()`` on a GPU),
    ``on_epoch_end`` after every pass over the data, ``on_eval`` after each evaluation has been
    logged and checkpointed (a test may kill the process there, as a power cut would).
    """

    def on_step(self, state: LoopState) -> None: ...

    def on_epoch_end(self, state: LoopState) -> None: ...

    def on_eval(self, state: LoopState, row: dict[str, float]) -> bool | None: ...


def _agree(value: bool, device: torch.device) -> bool:
    """Under DDP: True on every process when it is True on any (e.g. "the time budget is used")."""
    if not _distributed():
        return value
    flag = torch.tensor([float(value)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _format_row(row: Mapping[str, float], budget: Budget) -> str:
    parts = [f"step {int(row['step'])}" + (f"/{budget.steps}" if budget.steps else "")]
    parts += [f"epoch {int(row['epoch'])}" + (f"/{budget.epochs:g}" if budget.epochs else "")]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("_loss", "_acc"))]
    return "  ".join([*parts, f"lr {row['lr']:.3g}", f"{row['seconds']:.1f}s"])


class _Log:
    """What process 0 writes at each evaluation: a printed line and a row of metrics.csv."""

    def __init__(
        self, run: RunFolder | None, verbose: bool, rows: list[dict[str, float]], budget: Budget
    ) -> None:
        self.verbose, self.budget = verbose and is_main_process(), budget
        self.csv: CSVLogger | None = None
        if run is not None and run.writes_metrics and is_main_process():
            self.csv = run.metrics_logger(rows)  # rewritten from the restored rows: none appears twice

    def print(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def row(self, row: dict[str, float]) -> None:
        self.print(_format_row(row, self.budget))
        if self.csv is not None:
            self.csv.log(row)


def _epochs_of(data: Iterable[Any] | Callable[[int], Iterable[Any]]) -> Callable[[int], Iterable[Any]]:
    """``epoch -> the batches of that epoch``: ``data(epoch)`` for a function, else ``data`` again."""
    if callable(data) and not hasattr(data, "__iter__"):
        return data  # type: ignore[return-value]
    return lambda epoch: data  # type: ignore[return-value]


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def _save(
    run: RunFolder | None,
    state: LoopState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    scaler: torch.amp.GradScaler | None,
    config: Any,
) -> None:
    if run is None or not run.keeps_checkpoint or not is_main_process():
        return
    save_checkpoint(
        run.checkpoint,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        epoch=state.epoch,
        loop=state.plain(),
        best_weights=state.best_weights,
        config=config_to_dict(config) if hasattr(config, "__dataclass_fields__") else config,
    )


def train_loop(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Iterable[Any] | Callable[[int], Iterable[Any]],
    *,
    loss_fn: LossFn,
    device: torch.device | str,
    budget: Budget,
    evaluation: Evaluation | None = None,
    schedule: LRScheduler | Callable[[int, float], float] | None = None,
    selection: Selection | None = None,
    amp: bool | None = None,
    clip_grad_norm: float | None = None,
    run: RunFolder | None = None,
    resume: bool = False,
    config: Any = None,
    callbacks: Sequence[Callback] = (),
    net: nn.Module | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> LoopState:
    """Train ``model`` on ``data`` until ``budget`` is used; returns the final :class:`LoopState`.

    - ``data``: (x, y) batches, iterated once per epoch (a DataLoader, :class:`TensorBatches`, a list),
      or a function ``epoch -> batches`` (e.g. re-augmented data each epoch), or an endless iterator
      (e.g. random windows of a text: then only steps and seconds end the run).
    - ``schedule``: a torch LRScheduler stepped after every optimizer step, or ``f(step, used) -> factor``
      applied to each param group's initial lr (``used``: the fraction of the budget, 0..1).
    - ``evaluation``, ``selection``: see :class:`Evaluation`, :class:`Selection`. Each evaluation adds a
      row to the history (and to ``run``'s metrics.csv) and, with ``run``, saves ``run.checkpoint``;
      ``resume=True`` restores it (weights, optimizer, schedule, RNG states, best weights, history) and
      continues as if never stopped. At the end, with ``keep_best``, the best weights are loaded and
      the checkpoint saved once more with them.
    - ``amp``: None = bf16 autocast where it pays (:func:`dlkit.device.resolve_amp_dtype`), True =
      force it, False = off; a GradScaler is used only with float16.
    - ``net``: the module to call when it differs from ``model`` (``torch.compile(model)``); ``model``
      is the one saved. Under torchrun the loop wraps it in DistributedDataParallel.
    - ``progress``: a progress bar per epoch (None: when ``verbose``, on process 0, where
      ``dlkit.progress`` shows bars); ``verbose``: a printed line per evaluation.
    """
    device = torch.device(device)
    model.to(device)
    amp_dtype = resolve_amp_dtype(amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    scheduler = schedule if isinstance(schedule, LRScheduler | ReduceLROnPlateau) else None
    lr_factor = schedule if scheduler is None else None
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    selection = selection or Selection()
    if resume and (run is None or not run.keeps_checkpoint):
        raise ValueError("resume=True needs a run folder with a checkpoint to resume from")

    state = LoopState()
    if resume and run is not None and run.checkpoint.exists():
        saved = load_checkpoint(
            run.checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
            map_location=device,
        )  # fmt: skip
        state = LoopState(**saved["loop"], best_weights=saved.get("best_weights"))
    log = _Log(run, verbose, state.rows, budget)
    if state.step:
        log.print(
            f"resumed from {run.checkpoint if run else '?'} at step {state.step} ({state.seconds:.1f} s used)"
        )

    net = net if net is not None else model
    if _distributed() and not isinstance(net, DistributedDataParallel):
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    epochs = _epochs_of(data)
    steps_per_epoch = None if epochs is data else _length(data)
    per_epoch = evaluation is not None and not (evaluation.every_steps or evaluation.every_seconds)
    clock_every = 10 if device.type == "cuda" else 1  # a sync per step would starve the GPU
    show = is_main_process() and (verbose if progress is None else progress)

    def used() -> float:
        return budget.used(state, steps_per_epoch)

    def clock() -> None:
        _sync(device)
        state.seconds = seconds0 + time.perf_counter() - t0

    done = state.stopped_early or used() >= 1.0
    meter, iterator, last_lr = EpochMeter(device), None, optimizer.param_groups[0]["lr"]
    last_step, last_seconds = state.step, state.seconds
    _sync(device)
    t0, seconds0 = time.perf_counter(), state.seconds
    while not done:
        if iterator is None:  # a new pass over the data
            batches = epochs(state.epoch)
            if epochs is data:  # a function of the epoch: its batches say how many steps it has
                steps_per_epoch = _length(batches) or steps_per_epoch
            sampler = getattr(batches, "sampler", None)
            if hasattr(sampler, "set_epoch"):  # a DistributedSampler shuffles with (seed, epoch)
                sampler.set_epoch(state.epoch)  # type: ignore[union-attr]
            iterator = iter(progress_bar(batches, desc=f"epoch {state.epoch + 1}", disable=not show))
            in_epoch = 0
        net.train()
        due = epoch_end = False
        for batch in iterator:
            in_epoch += 1
            if lr_factor is not None:
                factor = lr_factor(state.step, used())  # type: ignore[operator]
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor
            loss, y_hat, y = train_step(
                net, _to(batch, device), loss_fn, optimizer,
                amp_dtype=amp_dtype, scaler=scaler, clip_grad_norm=clip_grad_norm,
            )  # fmt: skip
            last_lr = optimizer.param_groups[0]["lr"]  # the lr this step used: the row reports it
            if scheduler is not None and not isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step()
            _update(meter, loss, y_hat, y)
            state.step += 1
            state.examples += _batch_size(y) * get_world_size()
            if budget.seconds and state.step % clock_every == 0:
                clock()
            for callback in callbacks:
                callback.on_step(state)
            due = evaluation is not None and bool(
                (evaluation.every_steps and state.step - last_step >= evaluation.every_steps)
                or (evaluation.every_seconds and state.seconds - last_seconds >= evaluation.every_seconds)
            )
            over = used() >= 1.0
            if budget.seconds:  # processes read their own clocks: they must stop together
                due, over = _agree(due, device), _agree(over, device)
            if due or over:
                epoch_end = in_epoch == steps_per_epoch  # stopped on the last batch: the pass is complete
                break
        else:
            epoch_end = True
        if epoch_end:
            state.epoch, iterator = state.epoch + 1, None
            for callback in callbacks:
                callback.on_epoch_end(state)
        clock()  # the clock stops here
        done = _agree(used() >= 1.0, device) if budget.seconds else used() >= 1.0
        if evaluation is None or not (done or due or (per_epoch and epoch_end)):
            continue
        row = _evaluation_row(state, meter, evaluation, net, last_lr, device)
        meter, last_step, last_seconds = EpochMeter(device), state.step, state.seconds
        stop = _select(state, row, selection, model)
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(_monitored(row, selection.monitor))
        log.row(row)
        _save(run, state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, config=config)
        if _distributed():
            dist.barrier()  # the others wait until process 0 has saved
        for callback in callbacks:
            stop = bool(callback.on_eval(state, row)) or stop
        if stop and not done:
            state.stopped_early = done = True
            if selection.patience is not None and state.bad_evals >= max(selection.patience, 1):
                log.print(
                    f"early stopping: {selection.monitor} has not improved since step {state.best_step}"
                )
            _save(
                run,
                state,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                config=config,
            )
        _sync(device)
        t0, seconds0 = time.perf_counter(), state.seconds  # and starts again
    if selection.keep_best and state.best_weights is not None and state.best_step != state.step:
        unwrap_model(model).load_state_dict(state.best_weights)
        log.print(
            f"keeping the weights of step {state.best_step} ({selection.monitor} {state.best_value:.4f})"
        )
        _save(run, state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, config=config)
    return state


def _monitored(row: Mapping[str, float], monitor: str) -> float:
    if monitor not in row:
        raise KeyError(f"monitor={monitor!r} is not measured; this run measures {sorted(row)}")
    return row[monitor]


@torch.no_grad()
def _evaluation_row(
    state: LoopState,
    meter: EpochMeter,
    evaluation: Evaluation,
    net: nn.Module,
    lr: float,
    device: torch.device,
) -> dict[str, float]:
    """One row: where the run is, the training means since the last row, and the evaluation's metrics."""
    _all_reduce_sum(meter.sums)
    train = meter.compute() if meter.sums[2] > 0 else {}
    row: dict[str, float] = {
        "step": state.step, "epoch": state.epoch, "seconds": round(state.seconds, 3),
        "lr": lr,
    }  # fmt: skip
    row.update({f"train_{k}": v for k, v in train.items()})
    module = net.module if isinstance(net, DistributedDataParallel) else net
    module.eval()
    row.update({k: float(v) for k, v in evaluation.fn(module).items()})
    module.train()
    state.rows.append(row)
    return row


def _select(state: LoopState, row: Mapping[str, float], selection: Selection, model: nn.Module) -> bool:
    """Track the best evaluation (copying its weights with keep_best); True when patience ran out."""
    if selection.monitor not in row:
        if selection.keep_best or selection.patience is not None:
            _monitored(row, selection.monitor)  # a KeyError that names what is measured
        return False
    value = row[selection.monitor]
    if selection.better(value, state.best_value):
        state.best_value, state.best_step, state.bad_evals = value, state.step, 0
        if selection.keep_best:
            state.best_weights = {k: v.detach().clone() for k, v in unwrap_model(model).state_dict().items()}
    else:
        state.bad_evals += 1
    return selection.patience is not None and state.bad_evals >= max(selection.patience, 1)


# --- fit: the epoch-shaped loop -----------------------------------------------------------------------


class _EpochCallbacks(Callback):
    """fit's per-epoch hooks: an epoch scheduler's step, and ``cb(epoch, row)`` callbacks."""

    def __init__(self, scheduler: LRScheduler | None, callbacks: Sequence[EpochCallback]) -> None:
        self.scheduler, self.callbacks = scheduler, callbacks

    def on_epoch_end(self, state: LoopState) -> None:
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()

    def on_eval(self, state: LoopState, row: dict[str, float]) -> bool:
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(state.epoch, row)) or stop
        return stop


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    loss_fn: LossFn,
    num_epochs: int,
    device: torch.device | str,
    scheduler: LRScheduler | ReduceLROnPlateau | None = None,
    scheduler_interval: Literal["epoch", "batch"] = "epoch",
    amp: bool | None = None,
    clip_grad_norm: float | None = None,
    early_stopping_patience: int | None = None,
    keep_best: bool = False,
    monitor: str = "val_loss",
    run_dir: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    config: Any = None,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool | None = None,
    verbose: bool = True,
) -> History:
    """Train for ``num_epochs`` epochs, evaluating on ``val_loader`` after each; return the History.

    The epoch-shaped :func:`train_loop`: one row per epoch (epoch, step, seconds, lr, train_loss,
    train_acc, val_loss, val_acc). ``scheduler`` steps after every epoch, or every batch with
    ``scheduler_interval="batch"``; a ReduceLROnPlateau steps each epoch with ``monitor``.
    ``early_stopping_patience``/``keep_best`` select on ``monitor`` (a val_ metric needs a val_loader).
    ``run_dir`` gets metrics.csv; ``checkpoint_path`` a checkpoint after every epoch (``resume=True``
    continues it); ``callbacks``: ``cb(epoch, row)`` after each epoch (after the checkpoint), returning
    True stops.
    """
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', not {scheduler_interval!r}")
    if scheduler_interval == "batch" and isinstance(scheduler, ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau needs a metric, so it steps once per epoch")
    selects = early_stopping_patience is not None or keep_best or isinstance(scheduler, ReduceLROnPlateau)
    if selects and val_loader is None and monitor.startswith("val_"):
        raise ValueError(f"monitor={monitor!r} needs a val_loader (or monitor a train_ metric)")
    device = torch.device(device)
    amp_dtype = resolve_amp_dtype(amp, device)

    def validate(net: nn.Module) -> dict[str, float]:
        if val_loader is None:
            return {}
        return {
            f"val_{k}": v for k, v in evaluate(net, loss_fn, val_loader, device, amp_dtype=amp_dtype).items()
        }

    per_batch = scheduler_interval == "batch" or isinstance(scheduler, ReduceLROnPlateau)
    run = None
    if run_dir is not None or checkpoint_path is not None:
        folder = Path(run_dir) if run_dir is not None else Path(checkpoint_path).parent  # type: ignore[arg-type]
        checkpoint = Path(checkpoint_path).resolve() if checkpoint_path is not None else None
        run = RunFolder(folder, checkpoint=checkpoint, metrics=run_dir is not None)
    state = train_loop(
        model, optimizer, train_loader, loss_fn=loss_fn, device=device, budget=Budget(epochs=num_epochs),
        evaluation=Evaluation(validate), schedule=scheduler if per_batch else None,
        selection=Selection(monitor, keep_best=keep_best, patience=early_stopping_patience),
        amp=amp, clip_grad_norm=clip_grad_norm, run=run, resume=resume, config=config,
        callbacks=[_EpochCallbacks(None if per_batch else scheduler, callbacks)], progress=progress,
        verbose=verbose,
    )  # fmt: skip
    return state.history
