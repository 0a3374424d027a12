"""Release a trained model: weights as safetensors, metadata as JSON, and ONNX / torch.export graphs.

A release folder is what a server or another program loads, without the training code's checkpoint::

    save_release(model, {"architecture": "resnet_small", "classes": [...], ...}, "release/")
    model, metadata = load_release("release/", lambda meta: build_model(meta["architecture"], ...))
    export_onnx(model, example, "release/model.onnx")          # onnxruntime, browsers, C++, ...
    export_program(model, example, "release/model.pt2")        # torch.export: PyTorch without Python code
    check_onnx_parity(model, "release/model.onnx", real_inputs)  # max |onnx - torch|, raises if too far

``model.safetensors`` holds only tensors (no pickle: loading it cannot run code); ``model.json`` holds
everything a user needs to use the weights right: the architecture and its arguments, the classes,
the preprocessing, the metrics, the data it was trained on, the torch version and when it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlkit.checkpoint import unwrap_model
from dlkit.data import file_digest
from dlkit.errors import UserError
from dlkit.runs import atomic_write

__all__ = [
    "WEIGHTS_FILE",
    "METADATA_FILE",
    "ParityError",
    "ReleaseError",
    "check_onnx_parity",
    "export_onnx",
    "export_onnx_checked",
    "export_program",
    "load_program",
    "load_release",
    "onnx_session",
    "read_metadata",
    "save_release",
]

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


class ReleaseError(UserError, RuntimeError):
    """A release folder is missing a file, holds a corrupt one, or does not fit the model built for it."""


class ParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance; ``max_abs_diff`` says by how much."""

    def __init__(self, message: str, max_abs_diff: float) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff


# --- Weights and metadata ---------------------------------------------------------------------------


def _plain_json(metadata: Mapping[str, Any]) -> str:
    """``metadata`` as JSON text, or a TypeError naming what is not plain JSON (NaN included)."""
    try:
        return json.dumps(metadata, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"release metadata must be plain JSON (dict, list, str, int, float, bool, None; no NaN): {e}"
        ) from e


def _separate_tensors(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Contiguous tensors that share no memory, and the aliases of tied weights ({alias: kept name}).

    safetensors refuses tensors that share memory. A tied weight (the same tensor under two names,
    e.g. an embedding and an output layer) is stored once; any other overlap (a view into another
    tensor) is stored as its own copy.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    storages: set[int] = set()
    for name, tensor in state.items():
        t = tensor.detach()
        if t.numel() == 0:
            tensors[name] = t.contiguous().cpu()
            continue
        ptr = t.untyped_storage().data_ptr()
        key = (ptr, int(t.storage_offset()), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        shares = ptr in storages
        storages.add(ptr)
        t = t.cpu()
        tensors[name] = t.clone(memory_format=torch.contiguous_format) if shares else t.contiguous()
    return tensors, aliases


def save_release(model: nn.Module, metadata: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/model.safetensors`` (the state dict) and ``out_dir/model.json``; return ``out_dir``.

    ``metadata`` should say how to rebuild and use the model (architecture name and kwargs, classes,
    preprocessing, metrics, the data it was trained on); this adds the torch version, the creation
    time, the number of parameters, the tied weights and the weights file's sha256.
    """
    from safetensors.torch import save_file

    text = _plain_json(metadata)  # fail before writing anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = unwrap_model(model)
    tensors, aliases = _separate_tensors(model.state_dict())
    weights = out_dir / WEIGHTS_FILE

    def write_weights(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        tmp.chmod(0o644)  # safetensors creates it readable by its owner only

    atomic_write(weights, write_weights)
    info = {
        **json.loads(text),
        "torch_version": torch.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "weights": {"file": WEIGHTS_FILE, "sha256": file_digest(weights), "tied": aliases},
    }
    atomic_write(out_dir / METADATA_FILE, _plain_json(info))
    return out_dir


@contextmanager
def staged_release(out_dir: str | Path) -> Iterator[Path]:
    """A staging folder beside ``out_dir`` that replaces ``out_dir`` only if the block ends normally.

        with staged_release(run_dir / "release") as staging:
            export_onnx(model, x, staging / "model.onnx")   # a failed check raises: nothing is written
            save_release(model, metadata, staging)

    An existing ``out_dir`` is replaced only when it is a release (or empty), never another folder.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if out_dir.exists():
            if not (out_dir / METADATA_FILE).exists() and any(out_dir.iterdir()):
                raise FileExistsError(f"{out_dir} exists and is not a release folder: choose another --out")
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_metadata(out_dir: str | Path) -> dict[str, Any]:
    """``out_dir/model.json`` as a dict, with a clear ReleaseError when it is missing or not JSON."""
    path = Path(out_dir) / METADATA_FILE
    if not path.is_file():
        raise ReleaseError(
            f"{path} not found: is {Path(out_dir)} a release folder (written by an `export` command)?"
        )
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReleaseError(f"{path} is corrupt (not JSON: {e}); export the release again") from e
    if not isinstance(metadata, dict):
        raise ReleaseError(f"{path} is corrupt: it holds a {type(metadata).__name__}, not a JSON object")
    return metadata


def _read_weights(out_dir: Path, metadata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = out_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ReleaseError(f"{path} not found: the release in {out_dir} is incomplete; export it again")
    expected = metadata.get("weights", {}).get("sha256")
    if expected and file_digest(path) != expected:
        raise ReleaseError(f"{path} is corrupt: its sha256 is not the one {METADATA_FILE} records")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ReleaseError(
            f"{path} is corrupt (not a safetensors file: {e}); export the release again"
        ) from e
    for alias, name in metadata.get("weights", {}).get("tied", {}).items():
        tensors[alias] = tensors[name]
    return tensors


def _check_keys(model: nn.Module, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    """A ReleaseError listing the missing, unexpected and wrongly shaped weights, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if items
    ]
    if problems:
        raise ReleaseError(
            f"the weights in {where} do not fit the model built from {METADATA_FILE}: "
            + "; ".join(problems)
            + " (was the release made for another architecture or version of the code?)"
        )


def load_release(
    out_dir: str | Path,
    build_fn: Callable[[dict[str, Any]], nn.Module],
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a release folder, in eval mode on ``device``, and its metadata.

    ``build_fn(metadata)`` builds the untrained architecture (e.g. from ``metadata["architecture"]``);
    the weights are then loaded strictly. A missing or corrupt file, or weights that do not fit the
    model, raise ReleaseError saying which.
    """
    out_dir = Path(out_dir)
    metadata = read_metadata(out_dir)
    tensors = _read_weights(out_dir, metadata)
    model = build_fn(metadata)
    _check_keys(model, tensors, out_dir)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), metadata


# --- Graphs: ONNX and torch.export -------------------------------------------------------------------


def _free_dims(
    inputs: tuple[torch.Tensor, ...], batch: bool, length: bool = False
) -> tuple[tuple[torch.Tensor, ...], Any]:
    """The example inputs and the dynamic_shapes that free their first dimension (the batch) and, with
    ``length``, their second one, shared by all inputs.

    torch.export treats a dimension of size 1 as the constant 1, so such a dimension is repeated to two.
    """
    free = {}
    if batch:
        free[0] = torch.export.Dim("batch", min=1, max=65536)
    if length:
        free[1] = torch.export.Dim("length", min=1, max=1_000_000)
    if not free:
        return inputs, None
    grown = []
    for x in inputs:
        for dim in free:
            if x.shape[dim] == 1:
                x = x.repeat_interleave(2, dim=dim)
        grown.append(x)
    return tuple(grown), tuple(dict(free) for _ in inputs)


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    dynamic_length: bool = False,
    input_name: str | Sequence[str] = "input",
    output_name: str = "output",
    opset_version: int | None = None,
) -> Path:
    """Export ``model`` (put in eval mode) to one self-contained ONNX file with the dynamo exporter.

    The graph comes from torch.export, so it is exactly the model's computation; with
    ``dynamic_batch`` the first input dimension is named "batch" and any batch size runs; with
    ``dynamic_length`` the second one is named "length" (token ids of any length). A model of several
    inputs takes a tuple of examples and a name for each; they share the batch and length dimensions
    (token ids and their attention mask, say).
    """
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    if len(names) != len(inputs):
        raise ValueError(f"{len(inputs)} example inputs but {len(names)} input names: {names}")
    model = unwrap_model(model).eval()
    inputs, dynamic_shapes = _free_dims(inputs, dynamic_batch, dynamic_length)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints")  # inputs share dims
        torch.onnx.export(
            model,
            inputs,
            str(path),
            dynamo=True,
            input_names=names,
            output_names=[output_name],
            dynamic_shapes=dynamic_shapes,
            opset_version=opset_version,
            external_data=False,  # one file (fine below ONNX's 2 GB limit)
            verbose=False,
        )
    return path


def export_program(
    model: nn.Module, example_input: torch.Tensor, path: str | Path, *, dynamic_batch: bool = True
) -> Path:
    """Save ``model`` (put in eval mode) as a torch.export ExportedProgram (``.pt2``).

    ``torch.export.load(path).module()`` runs it in any PyTorch of a compatible version, without the
    Python code that defined the model (the successor of TorchScript).
    """
    model = unwrap_model(model).eval()
    (example_input,), dynamic_shapes = _free_dims((example_input,), dynamic_batch)
    program = torch.export.export(model, (example_input,), dynamic_shapes=dynamic_shapes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def load_program(path: str | Path) -> nn.Module:
    """The callable module of an ExportedProgram saved by :func:`export_program`."""
    return torch.export.load(str(path)).module()


def onnx_session(path: str | Path, num_threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession on the CPU, using ``num_threads`` (default: torch's) threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _onnx_feed(tensor: torch.Tensor) -> Any:
    """A tensor as ONNX Runtime takes it: floating point as float32, integers (token ids) as they are."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


@torch.no_grad()
def check_onnx_parity(
    model: nn.Module,
    onnx_path: str | Path,
    inputs: torch.Tensor | Sequence[Sequence[torch.Tensor]],
    atol: float = 1e-4,
    rtol: float = 1e-4,
    batch_size: int = 256,
) -> float:
    """The largest |ONNX Runtime - PyTorch| over ``inputs``; ParityError if any output is out of tolerance.

    ``inputs`` is one tensor (split into batches of ``batch_size``) or a sequence of batches, each a
    tuple of the model's inputs in the graph's input order (e.g. token ids and an attention mask).
    Integer inputs stay integers. An output passes when ``|onnx - torch| <= atol + rtol * |torch|``
    (numpy.allclose's rule).
    """
    model = unwrap_model(model).eval()
    device = next(model.parameters(), torch.empty(0)).device
    session = onnx_session(onnx_path)
    names = [i.name for i in session.get_inputs()]
    batches = [(b,) for b in inputs.split(batch_size)] if isinstance(inputs, torch.Tensor) else inputs
    worst, worst_excess, count = 0.0, -float("inf"), 0
    for batch in batches:
        expected = model(*(t.to(device) for t in batch)).float().cpu().double()  # (B, ...)
        feed = {name: _onnx_feed(t) for name, t in zip(names, batch, strict=True)}
        got = torch.from_numpy(np.asarray(session.run(None, feed)[0])).double()
        diff = (got - expected).abs()
        worst = max(worst, float(diff.max()))
        worst_excess = max(worst_excess, float((diff - atol - rtol * expected.abs()).max()))
        count += len(batch[0])
    if worst_excess > 0:
        raise ParityError(
            f"ONNX Runtime and PyTorch disagree on {onnx_path}: max abs diff {worst:.3g} "
            f"(tolerance atol={atol:g}, rtol={rtol:g}, over {count} inputs)",
            worst,
        )
    return worst


def export_onnx_checked(
    model: nn.Module,
    examples: torch.Tensor | Sequence[Sequence[torch.Tensor]],
    staging: str | Path,
    *,
    source: str,
    input_name: str | Sequence[str] = "input",
    output_name: str = "output",
    dynamic_length: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> dict[str, Any]:
    """Write ``staging/model.onnx`` and check it against PyTorch on the real ``examples`` (one tensor,
    or batches of input tuples); return what model.json records of it (files, inputs, parity).

    ``source`` says where the examples came from ("64 test images of CIFAR-10"). A disagreement beyond
    the tolerance raises ParityError, so a release is never written with a graph that computes
    something else.
    """
    if isinstance(examples, torch.Tensor):
        example: torch.Tensor | tuple[torch.Tensor, ...] = examples[:2]
    else:
        example = tuple(t[:2] for t in examples[0])
    path = export_onnx(
        model, example, Path(staging) / "model.onnx", input_name=input_name, output_name=output_name,
        dynamic_length=dynamic_length,
    )  # fmt: skip
    diff = check_onnx_parity(model, path, examples, atol=atol, rtol=rtol)
    names = [input_name] if isinstance(input_name, str) else list(input_name)
    return {
        "files": {"onnx": path.name},
        "onnx": {
            "inputs": names,
            "output": output_name,
            "dynamic_batch": True,
            "dynamic_length": dynamic_length,
        },
        "parity": {"examples": source, "atol": atol, "rtol": rtol, "onnx_max_abs_diff": diff},
    }
