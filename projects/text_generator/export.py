"""Turn a training run into a release folder that ``sample`` and other programs load.

    python -m projects.text_generator export --run-dir runs/text_generator/gpu

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle) and what is needed to use them: the
  architecture (``GPTConfig``), the character vocabulary (``CharVocab.to_dict()``), the val loss, the
  data and config it was trained with (see dlkit.export);
- ``model.onnx``: the forward pass, character ids ``idx`` (batch, block_size) int64 -> ``logits``
  (batch, block_size, vocab) float32, any batch size. The context length is fixed: the model is causal,
  so a shorter prompt can be right-padded with any id and the logits read at its last position.

Before the release is written, ONNX Runtime must agree with PyTorch on real validation windows (the
run's own split of tiny shakespeare, found locally) within ``--atol``/``--rtol``; otherwise the export
fails and nothing is written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlkit.config import parse_config
from dlkit.export import (
    ParityError,
    check_onnx_parity,
    export_onnx,
    read_metadata,
    save_release,
    staged_release,
)
from projects.text_generator.data import load_char_data, val_windows
from projects.text_generator.train import load_trained

__all__ = ["ExportConfig", "main", "parity_windows", "release_from_run"]


@dataclass
class ExportConfig:
    """Export a run folder (written by `train`) as a release: safetensors + JSON, and ONNX."""

    run_dir: str = field(default="", metadata={"help": "the run folder train wrote (required)"})
    out: str = field(default="", metadata={"help": "the release folder (default: <run-dir>/release)"})
    parity_windows: int = field(default=64, metadata={"help": "val windows ONNX is checked on"})
    atol: float = 1e-4
    rtol: float = 1e-4
    onnx: bool = field(default=True, metadata={"help": "--no-onnx: only safetensors + model.json"})


def parity_windows(info: dict[str, Any], config: dict[str, Any], n: int) -> torch.Tensor:
    """``n`` random validation windows (n, block_size) of the run's own data, as the model reads them."""
    data = load_char_data(config.get("max_chars"), download=False, text_file=config.get("text_file", ""))
    if data.vocab.chars != info["vocab"]["chars"]:
        raise ValueError("the data found locally is not the text this run was trained on (other characters)")
    block_size = info["model_config"]["block_size"]
    return val_windows(data.val, block_size, n, 1)[0][0]


@torch.no_grad()
def _release_metadata(info: dict[str, Any], run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "architecture": {"name": "gpt", "config": info["model_config"]},
        "vocab": info["vocab"],
        "dataset": info["dataset"],
        "split": info["split"],
        "metrics": info["metrics"],
        "trained_from": {"run_dir": str(run_dir), "config": config},
    }


def release_from_run(
    run_dir: str | Path, out_dir: str | Path | None = None, *, num_windows: int = 64,
    atol: float = 1e-4, rtol: float = 1e-4, onnx: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Write the release of ``run_dir`` to ``out_dir`` (default ``run_dir/release``); return model.json.

    The files are made in a staging folder and moved into place only when every check passed.
    """
    import json

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "release"
    model, info = load_trained(run_dir)
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    metadata = _release_metadata(info, run_dir, config)
    with staged_release(out_dir) as staging:
        if onnx:
            x = parity_windows(info, config, num_windows)  # (N, block_size)
            export_onnx(model, x[:2], staging / "model.onnx", input_name="idx", output_name="logits")
            diff = check_onnx_parity(model, staging / "model.onnx", x, atol=atol, rtol=rtol, batch_size=64)
            metadata["files"] = {"onnx": "model.onnx"}
            metadata["onnx"] = {
                "input": "idx", "output": "logits", "dynamic_batch": True,
                "input_shape": ["batch", x.shape[1]], "input_dtype": "int64",
            }  # fmt: skip
            metadata["parity"] = {
                "inputs": f"{len(x)} validation windows of {x.shape[1]} characters", "atol": atol,
                "rtol": rtol, "onnx_max_abs_diff": diff,
            }  # fmt: skip
        save_release(model, metadata, staging)
    return read_metadata(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Export ``--run-dir``; exit status 1 when ONNX disagrees with PyTorch or the data is missing."""
    cfg = parse_config(ExportConfig, argv)
    if not cfg.run_dir:
        raise SystemExit(
            "export needs --run-dir (a folder written by `python -m projects.text_generator train`)"
        )
    out = cfg.out or str(Path(cfg.run_dir) / "release")
    try:
        meta = release_from_run(
            cfg.run_dir, out, num_windows=cfg.parity_windows, atol=cfg.atol, rtol=cfg.rtol, onnx=cfg.onnx
        )
    except (ParityError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export failed, nothing written: {e}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in Path(out).iterdir())
    print(f"release in {out}: {', '.join(files)}; val loss {meta['metrics'].get('val_loss')}")
    if "parity" in meta:
        p = meta["parity"]
        print(f"ONNX Runtime vs PyTorch on {p['inputs']}: max abs diff {p['onnx_max_abs_diff']:.2e} "
              f"(tolerance atol {p['atol']:g}, rtol {p['rtol']:g})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
