"""The run folder: everything one training run leaves behind, in one place, written atomically.

    run = RunFolder.of("image_classifier", "cifar10-resnet_small")   # runs/image_classifier/<name>/
    run.save_config(cfg)                     # config.json: the resolved flags
    run.metrics_logger()                     # metrics.csv: one row per evaluation
    run.checkpoint                           # checkpoint.pt: what --resume continues (dlkit.checkpoint)
    run.write_info({...})                    # model_info.json: how to rebuild and feed the model
    run.savefig(fig, "loss")                 # loss.png
    run.release                              # release/: what `export` writes (dlkit.export)
    model, info = load_trained(run.path, build_fn)   # the trained model back, from any of the above

Every file here (and every checkpoint, release file and lesson outcome) is written with
:func:`atomic_write`: to a temporary name in the same folder, then renamed over the target, so a run
killed mid-write leaves the old file whole and never half of a new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.config import config_to_dict
from dlkit.errors import UserError
from dlkit.metrics import CSVLogger

__all__ = [
    "CONFIG_FILE",
    "INFO_FILE",
    "RunFolder",
    "RunNotFoundError",
    "atomic_write",
    "load_trained",
    "read_json",
    "runs_root",
    "write_json",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
INFO_FILE = "model_info.json"
RELEASE_DIR = "release"


class RunNotFoundError(UserError):
    """A folder that is not (or not yet) a finished run folder of a `train` command."""


def runs_root() -> Path:
    """Where runs are written: ``$DLKIT_RUNS`` or ``./runs``."""
    return Path(os.environ.get("DLKIT_RUNS", "runs"))


def atomic_write(
    path: str | Path, data: str | bytes | Callable[[Path], None], *, durable: bool = False
) -> Path:
    """Write ``data`` (text, bytes, or ``data(tmp_path)`` for writers that need a path, such as
    ``torch.save``) to ``path`` atomically: into ``.<name>.<pid>.tmp`` beside it, then renamed over it.
    ``durable=True`` also flushes the file and the rename to disk (checkpoints: a power cut keeps them).
    Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed
    if durable and os.name == "posix":  # the rename itself; Windows cannot open a folder
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """``data`` as indented JSON, atomically (NaN is refused: it is not JSON)."""
    return atomic_write(path, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; a missing or corrupt file is a UserError that names it."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunNotFoundError(f"{path} not found") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunNotFoundError(f"{path} is corrupt (not JSON: {e})") from e
    if not isinstance(value, dict):
        raise RunNotFoundError(f"{path} holds a {type(value).__name__}, not a JSON object")
    return value


class RunFolder:
    """The folder of one training run and the names of what it holds.

    ``checkpoint`` names the checkpoint file (relative to the folder, or absolute; None: the run saves
    none) and ``metrics=False`` keeps the loop from writing metrics.csv: for callers such as
    ``fit(checkpoint_path=...)`` that want one without the other.
    """

    def __init__(
        self, path: str | Path, *, checkpoint: str | Path | None = CHECKPOINT_FILE, metrics: bool = True
    ) -> None:
        self.path = Path(path)
        self._checkpoint = None if checkpoint is None else self.path / checkpoint
        self.writes_metrics = metrics

    @classmethod
    def of(cls, project: str, name: str, runs_dir: str | Path = "") -> RunFolder:
        """``runs_dir/name``, or by default ``$DLKIT_RUNS/<project>/<name>`` (``runs/`` without it)."""
        if not name or Path(name).name != name or name in (".", ".."):
            raise UserError(f"--run-name must be a plain folder name, not {name!r}")
        return cls((Path(runs_dir) if runs_dir else runs_root() / project) / name)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoint(self) -> Path:
        if self._checkpoint is None:
            raise ValueError(f"{self} keeps no checkpoint")
        return self._checkpoint

    @property
    def keeps_checkpoint(self) -> bool:
        return self._checkpoint is not None

    @property
    def info_path(self) -> Path:
        return self.path / INFO_FILE

    @property
    def release(self) -> Path:
        return self.path / RELEASE_DIR

    def create(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def save_config(self, cfg: Any) -> Path:
        """The resolved config (a dataclass or dict) as config.json."""
        data = config_to_dict(cfg) if not isinstance(cfg, Mapping) else dict(cfg)
        return atomic_write(self.config_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def metrics_logger(self, rows: Sequence[Mapping[str, Any]] = ()) -> CSVLogger:
        """A fresh metrics.csv holding ``rows`` (e.g. those a resumed run restored), ready for more."""
        logger = CSVLogger(self.metrics_path, append=False)
        for row in rows:
            logger.log(row)
        return logger

    def write_info(self, info: Mapping[str, Any]) -> Path:
        """model_info.json: what evaluate, export, predict and serve need to rebuild and feed the model."""
        return write_json(self.info_path, info)

    def read_info(self) -> dict[str, Any]:
        return read_json(self.info_path)

    def savefig(self, fig: Any, name: str) -> Path:
        """``fig`` as ``<name>.png`` (matplotlib), closed afterwards."""
        from dlkit.plots import save_figure

        return save_figure(fig, self.path / f"{name}.png")

    def require_trained(self) -> None:
        """A RunNotFoundError that says what to run, unless train has finished writing this folder."""
        if not self.path.is_dir():
            raise RunNotFoundError(f"{self.path} does not exist: train a model first (the `train` command)")
        missing = [p.name for p in (self.info_path, self.checkpoint) if not p.exists()]
        if missing:
            raise RunNotFoundError(
                f"{self.path} is not a finished run folder of `train`: no {' or '.join(missing)}"
            )


def load_trained(
    run_dir: str | Path,
    build_fn: Callable[[dict[str, Any]], nn.Module],
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a run folder (eval mode, on ``device``) and its model_info.json.

    ``build_fn(info)`` builds the untrained architecture from model_info.json; the weights come from
    checkpoint.pt (loaded with ``weights_only=True``; the best weights when the run kept them).
    """
    from dlkit.checkpoint import load_checkpoint

    run = RunFolder(run_dir)
    run.require_trained()
    info = run.read_info()
    model = build_fn(info)
    load_checkpoint(run.checkpoint, model=model, restore_rng=False)
    return model.to(device).eval(), info
