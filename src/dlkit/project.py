"""One shape for every project: ``python -m projects.NAME train | evaluate | export | predict | serve``.

A project's ``__main__`` is one call to :func:`project_main`; each command is a thin module whose config
subclasses one of the bases here, so that every project has the same flags with the same defaults:

- :class:`TrainConfig`: ``--quick --device --seed --threads --run-name --runs-dir --resume``;
  :func:`start_training` sets threads, seed and device, opens the run folder and saves the config;
  :func:`parse_train_config` re-reads a resumed run's config.json, the flags given winning.
- :class:`EvalConfig`: ``--run-dir --split val|test --device --batch-size``.
- :class:`ExportConfig` and :func:`export_main`: ``--run-dir --out --onnx/--no-onnx --parity-examples
  --atol --rtol``; the release is staged and moved into place only when every check passed.
- :class:`PredictConfig`: ``--release --device --batch-size --json``; :class:`ReleasePredictor` is the
  base of each project's predictor (load a release once, describe it to clients).
- :class:`ServeConfig` and :func:`serve_main`: ``--release --host --port --workers --threads --device
  --max-body-kb --max-batch --log-level``; one launcher starts uvicorn (several workers included) and
  sets each worker's torch threads.

Expected failures (a run folder that is not there, a release that fails to load, a parity check that
fails) print one line and exit non-zero (:mod:`dlkit.errors`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from dlkit.checkpoint import remove_stale_temp_files
from dlkit.config import build_parser, config_to_dict, flag, parse_config
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.errors import UserError, run_cli
from dlkit.runs import RunFolder, runs_root

__all__ = [
    "EvalConfig",
    "ExportConfig",
    "PredictConfig",
    "ReleasePredictor",
    "ServeConfig",
    "TrainConfig",
    "export_main",
    "parse_train_config",
    "project_main",
    "serve_main",
    "start_training",
]

C = TypeVar("C")

DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:1, mps or gpu"


# --- The command line ---------------------------------------------------------------------------------


def project_main(package: str, commands: Mapping[str, str], argv: Sequence[str] | None, usage: str) -> int:
    """``python -m PACKAGE COMMAND [flags]``: run ``PACKAGE.COMMAND.main(flags)``, or list the commands.

    A command is a module of the package with a ``main(argv)``; a value in ``commands`` that starts
    with "=" makes the command an alias (``"sample": "=predict"``). Exit status: the command's (0 for
    None), 1 for an expected failure (one line, no traceback), 2 for a bad command line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}", file=sys.stderr)
        print(usage)
        visible = {name: text for name, text in commands.items() if not text.startswith("=")}
        width = max(map(len, visible))
        for name, text in visible.items():
            print(f"  {name:<{width}s}  {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    command = commands[argv[0]][1:] if commands[argv[0]].startswith("=") else argv[0]
    module = importlib.import_module(f"{package}.{command}")
    sys.argv[0] = f"python -m {package} {argv[0]}"  # what argparse names in usage and error lines
    return run_cli(lambda: module.main(argv[1:]))


# --- train --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """The flags every project's ``train`` has; a project's TrainConfig subclasses this."""

    quick: bool = flag(False, help="a tiny run on data that needs no download: seconds on a CPU")
    device: str = flag("auto", help=DEVICE_HELP)
    seed: int = 0
    threads: int = 0
    run_name: str = flag("", help="the run folder's name (default: from the dataset and model)")
    runs_dir: str = flag("", help="where run folders go (default: $DLKIT_RUNS/<project> or runs/<project>)")
    resume: bool = flag(
        False, help="continue the run folder's checkpoint (a killed run ends as if never stopped)"
    )


def parse_train_config(
    cls: type[C],
    argv: Sequence[str] | None,
    run_of: Callable[[C], RunFolder],
    *,
    quick: Mapping[str, Any] | None = None,
    defaults: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
) -> C:
    """The flags of ``argv``; with ``--resume``, the run folder's config.json with only the flags given
    replaced. ``defaults(given)`` may add values that depend on other flags (a preset, a model's
    recipe): dataclass defaults < ``defaults(given)`` < quick < the flags given."""
    parser = build_parser(cls)
    given = vars(parser.parse_args(argv))
    if defaults is not None:
        base = parse_config(cls, [], quick=None)
        values = {**config_to_dict(base), **defaults(given)}
        if given.get("quick", values.get("quick")) and quick:
            values.update(quick)
        values.update(given)
        cfg = cls(**_with_tuples(cls, values))
    else:
        cfg = parse_config(cls, argv, quick=quick)
    saved = run_of(cfg).config_path
    if getattr(cfg, "resume", False) and saved.exists():
        cfg = cls(**_with_tuples(cls, {**json.loads(saved.read_text()), **given}))
    from dlkit.config import ConfigError, check_config

    try:
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return cfg


def _with_tuples(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    from dlkit.config import _tuples

    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - names
    if unknown:
        raise UserError(f"config keys {sorted(unknown)} are not flags of this command")
    return _tuples(cls, values)


def start_training(cfg: TrainConfig, run: RunFolder) -> torch.device:
    """Threads, seed and device as the flags say (under torchrun: this process's share, the process
    group joined); the run folder made and its config.json written, and temp files of a killed run's
    checkpoint writes removed, by process 0 only. Returns the device this process trains on."""
    from dlkit.train import is_main_process, setup_distributed

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = setup_distributed(cfg.device)  # get_device(cfg.device) without torchrun
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if is_main_process():
        if not cfg.resume and run.checkpoint.exists():
            print(f"note: {run.path} holds a run; starting over (--resume continues it)")
        run.create().save_config(cfg)
        remove_stale_temp_files(run.checkpoint)
    return device


# --- evaluate -------------------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """The flags every project's ``evaluate`` has."""

    run_dir: str = flag("", help="the run folder that `train` wrote (required)")
    split: str = flag("test", help="which split to score", choices=("val", "test"))
    batch_size: int = 256
    device: str = flag("auto", help=DEVICE_HELP)


def trained_run(run_dir: str, command: str = "train") -> RunFolder:
    """The RunFolder of ``--run-dir``, or a UserError that says what to pass."""
    if not run_dir:
        raise UserError(f"--run-dir is required: a folder written by `{command}` (under {runs_root()}/)")
    run = RunFolder(run_dir)
    run.require_trained()
    return run


# --- export ----------------------------------------------------------------------------------------------


@dataclass
class ExportConfig:
    """Export a run folder (written by `train`) as a release: safetensors + JSON, and ONNX."""

    run_dir: str = flag("", help="the run folder that `train` wrote (required)")
    out: str = flag("", help="the release folder (default: <run-dir>/release)")
    onnx: bool = flag(True, help="also write model.onnx, checked against PyTorch (--no-onnx: weights only)")
    parity_examples: int = flag(64, help="real examples ONNX is checked on", min=1)
    atol: float = flag(1e-4, help="absolute tolerance of the parity check", above=0)
    rtol: float = flag(1e-4, help="relative tolerance of the parity check", min=0)


ReleaseWriter = Callable[[Any, RunFolder, Path], Mapping[str, Any]]


def export_main(argv: Sequence[str] | None, config_cls: type[ExportConfig], write: ReleaseWriter) -> int:
    """The export command: ``write(cfg, run, staging)`` fills the staging folder (save_release, ONNX,
    parity checks) and returns model.json's metadata; the folder replaces ``--out`` only if it returns.
    A parity check that fails is a UserError: nothing is written."""
    from dlkit.export import ParityError, staged_release

    cfg = parse_config(config_cls, argv)
    run = trained_run(cfg.run_dir)
    out = Path(cfg.out) if cfg.out else run.release
    try:
        with staged_release(out) as staging:
            metadata = write(cfg, run, staging)
    except ParityError as e:
        raise UserError(f"export failed, nothing written: {e}") from e
    except FileExistsError as e:
        raise UserError(str(e)) from e
    files = sorted(p.name for p in out.iterdir())
    print(f"release of {run.path.name} in {out}: {', '.join(files)}")
    parity = metadata.get("parity")
    if parity:
        print(
            f"ONNX Runtime vs PyTorch on {parity['examples']}: max abs diff "
            f"{parity['onnx_max_abs_diff']:.2e} (tolerance atol {parity['atol']:g}, rtol {parity['rtol']:g})"
        )
    return 0


# --- predict ---------------------------------------------------------------------------------------------


@dataclass
class PredictConfig:
    """The flags every project's ``predict`` has."""

    release: str = flag("", help="a release folder written by `export` (required)")
    batch_size: int = 64
    json: bool = flag(False, help="print one JSON object per input instead of text")
    device: str = flag("auto", help=DEVICE_HELP)


class ReleasePredictor:
    """What predict and serve share: a release's model loaded once, in eval mode, and its metadata.

    A project subclasses it with ``build_model(metadata)`` (the untrained architecture) and its own
    ``prepare``/``predict`` methods; ``describe()`` is what a client may see (for ``/health``).
    """

    name_key = "architecture"

    def __init__(self, model: nn.Module, metadata: dict[str, Any], device: torch.device) -> None:
        self.model, self.metadata, self.device = model, metadata, device

    @staticmethod
    def build_model(metadata: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def from_release(cls, release: str | Path, device: str | torch.device = "auto") -> ReleasePredictor:
        from dlkit.export import load_release

        if not str(release):
            raise UserError("--release is required: a folder written by the `export` command")
        if not Path(release).is_dir():
            raise UserError(f"--release {release}: no such folder (write one with the `export` command)")
        device = get_device(str(device))
        model, metadata = load_release(release, cls.build_model, device)
        return cls(model, metadata, device)

    @property
    def name(self) -> str:
        arch = self.metadata.get(self.name_key, "model")
        return str(arch.get("name", arch) if isinstance(arch, dict) else arch)

    def describe(self) -> dict[str, Any]:
        """The model as a client needs it: what it is, what it was trained on, how well it does, what it
        takes; never where its files lie on the server."""
        keep = (
            "classes",
            "dataset",
            "metrics",
            "preprocessing",
            "num_parameters",
            "created",
            "torch_version",
        )
        described = {k: self.metadata[k] for k in keep if k in self.metadata}
        return {"name": self.name, "device": describe_device(self.device), **described}


# --- serve -----------------------------------------------------------------------------------------------

SERVE_ENV = "DLKIT_SERVE"


@dataclass
class ServeConfig:
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    release: str = flag("", help="the release folder that `export` wrote (required)")
    host: str = flag("127.0.0.1", help="0.0.0.0 to be reachable from other machines")
    port: int = 8000
    workers: int = flag(1, help="server processes, each with its own copy of the model")
    threads: int = flag(0, help="torch threads per worker (0: the CPU cores shared among the workers)")
    device: str = flag("auto", help=DEVICE_HELP)
    max_body_kb: int = flag(256, help="largest request body accepted (413 above it)", min=1)
    max_batch: int = 32
    log_level: str = flag(
        "info", help="uvicorn's log level", choices=("critical", "error", "warning", "info", "debug")
    )


def worker_threads(cfg: ServeConfig) -> int:
    """Torch threads for one worker: ``--threads``, else the cores divided among the workers (at least
    1): N workers each using every core would fight over them."""
    return cfg.threads or max(1, (os.cpu_count() or 1) // cfg.workers)


def serve_main(argv: Sequence[str] | None, config_cls: type[ServeConfig], app_factory: str) -> int:
    """The serve command: parse the flags, check the release, then run uvicorn until Ctrl+C.

    ``app_factory`` ("package.module:function") builds the app from the config; each worker process
    calls it (uvicorn imports it), so the config travels to the workers in one environment variable.
    """
    import uvicorn

    cfg = parse_config(config_cls, argv)
    if not cfg.release:
        raise UserError("serve needs --release: a folder written by the `export` command")
    if not (Path(cfg.release) / "model.json").is_file():
        raise UserError(
            f"--release {cfg.release} is not a release folder (no model.json): run `export` first"
        )
    get_device(cfg.device)  # fail here, once, rather than in every worker
    os.environ[SERVE_ENV] = json.dumps(
        {"factory": app_factory, "config_class": f"{config_cls.__module__}:{config_cls.__qualname__}",
         "config": config_to_dict(cfg)}
    )  # fmt: skip
    uvicorn.run(
        "dlkit.project:app_from_env", factory=True, host=cfg.host, port=cfg.port, workers=cfg.workers,
        log_level=cfg.log_level,
    )  # fmt: skip
    return 0


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def app_from_env() -> Any:
    """For uvicorn's ``--factory``: the app that :func:`serve_main` described in ``$DLKIT_SERVE``."""
    spec = json.loads(os.environ[SERVE_ENV])
    config_cls = _import(spec["config_class"])
    cfg = config_cls(**_with_tuples(config_cls, spec["config"]))
    torch.set_num_threads(worker_threads(cfg))
    return _import(spec["factory"])(cfg)
