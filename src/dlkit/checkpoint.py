"""Save and restore a training run: weights, optimizer, scheduler, scaler, RNG states and epoch.

A checkpoint holds only plain types (dicts, lists, tuples, str, int, float, bool, None and tensors), so
``torch.load(path, weights_only=True)`` opens it without running any pickled code. It is written
atomically: a run killed in the middle of saving leaves the previous checkpoint as it was (and a
temporary file, which the next save in that folder removes). A file that does not load is a
:class:`CheckpointError` naming it, not torch's "PytorchStreamReader failed ...".
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from dlkit.errors import UserError

__all__ = [
    "CheckpointError",
    "get_rng_state",
    "load_checkpoint",
    "remove_stale_temp_files",
    "save_checkpoint",
    "set_rng_state",
    "unwrap_model",
]


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupt or of another model; the message names the file."""


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model without its DistributedDataParallel / DataParallel and torch.compile wrappers.

    Saving the unwrapped model keeps the keys clean ("fc.weight", not "module._orig_mod.fc.weight"),
    so the checkpoint loads into a plain model.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def get_rng_state() -> dict[str, Any]:
    """Every random number generator's state, as plain types: Python, NumPy, torch CPU, CUDA, MPS."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        # A NumPy array would need pickle to load; a tensor does not.
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``get_rng_state`` returned (generators the machine does not have are skipped)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def _check_plain(value: Any, where: str) -> None:
    """Fail now, with the key's name, rather than when ``weights_only=True`` refuses to load it."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_plain(key, f"{where} key")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"{where} is a {type(value).__name__}; a checkpoint holds only dicts, lists, tuples, str, int, "
            "float, bool, None and tensors (convert configs with dlkit.config.config_to_dict, arrays with "
            "torch.as_tensor or .tolist())"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or a platform without signals: leave its file alone
    return True


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the ``.<name>.<pid>.tmp`` files that saves of ``path`` killed mid-write left behind
    (those of processes still running are kept); returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    epoch: int,
    **extra: Any,
) -> Path:
    """Write model, optimizer, scheduler and scaler states, RNG states, ``epoch`` and ``extra`` to ``path``.

    ``extra`` holds anything else the run needs to continue (history rows, early-stopping state, the
    config as a dict), as plain types. The file is written to a temporary name in the same folder,
    flushed to disk, then renamed over ``path``: the rename is atomic, so ``path`` is always either the
    old checkpoint or the new one, never half of one.
    """
    _check_plain(extra, "extra")
    state: dict[str, Any] = {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "rng": get_rng_state(),
        **extra,
    }
    from dlkit.runs import atomic_write  # runs imports this module

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    return atomic_write(path, lambda tmp: torch.save(state, tmp), durable=True)


def load_checkpoint(
    path: str | Path,
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load ``path`` (with ``weights_only=True``), restore its states into what is given, return it all.

    ``restore_rng=True`` also puts every random number generator back where it was at save time, so
    that a resumed run draws the same data order and dropout masks as an uninterrupted one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip errors, EOF, unpickling refusals: all mean "this file is unusable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"the checkpoint {path} is truncated or corrupt and cannot be loaded ({first[:200]}); "
            "delete it to start over, or restore a good copy"
        ) from e
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path} is not a dlkit checkpoint (no 'model' entry)")
    try:
        if model is not None:
            unwrap_model(model).load_state_dict(checkpoint["model"])
        for name, target in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
            if target is not None and checkpoint.get(name) is not None:
                target.load_state_dict(checkpoint[name])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"the checkpoint {path} does not fit this model or optimizer ({first[:300]}): it was saved by "
            "another configuration; start a new run (another --run-name) or resume with the same flags"
        ) from e
    if restore_rng and "rng" in checkpoint:
        set_rng_state(checkpoint["rng"])
    return checkpoint
