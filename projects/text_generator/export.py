"""Turn a training run into a release folder that ``predict``, ``serve`` and other programs load.

    python -m projects.text_generator export --run-dir runs/text_generator/gpu

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle) and what is needed to use them: the
  architecture (``GPTConfig``), the character vocabulary (``CharVocab.to_dict()``), the metrics, the
  text it was trained on (named, without server paths);
- ``model.onnx``: the forward pass, character ids ``idx`` (batch, block_size) int64 -> ``logits``
  (batch, block_size, vocab) float32, any batch size. The context length is fixed: the model is causal,
  so a shorter prompt can be right-padded with any id and the logits read at its last position.

Before the release is written, ONNX Runtime must agree with PyTorch on ``--parity-examples`` real
validation windows of the run's own text within ``--atol``/``--rtol``; otherwise nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlkit.errors import UserError
from dlkit.export import export_onnx_checked, save_release
from dlkit.project import ExportConfig as ProjectExportConfig
from dlkit.project import export_main
from dlkit.runs import RunFolder
from projects.text_generator.data import load_char_data, val_windows
from projects.text_generator.train import load_gpt

__all__ = ["ExportConfig", "main", "parity_windows", "run_data", "write_release"]


@dataclass
class ExportConfig(ProjectExportConfig):
    """Export a run folder (written by `train`) as a release: safetensors + model.json, and ONNX checked
    against PyTorch on real validation windows."""


def run_data(info: dict[str, Any]):  # noqa: ANN201 - CharData
    """The text a run trained on (tiny shakespeare, Python's help topics or its own file), split as in
    training; a UserError if it is not the same text (other characters)."""
    spec = info.get("data", {})
    data = load_char_data(
        spec.get("text", "tiny_shakespeare"),
        max_chars=spec.get("max_chars"),
        text_file=spec.get("text_file", ""),
    )
    if data.vocab.chars != info["vocab"]["chars"]:
        raise UserError(
            f"{data.source} is not the text this run was trained on (its characters differ): "
            "was the file changed after training?"
        )
    return data


def parity_windows(info: dict[str, Any], n: int) -> torch.Tensor:
    """``n`` random validation windows (n, block_size) of the run's own text, as the model reads them."""
    data = run_data(info)
    return val_windows(data.val, info["model_config"]["block_size"], n, 1)[0][0]


def write_release(cfg: ExportConfig, run: RunFolder, staging: Path) -> dict[str, Any]:
    """Fill ``staging`` with the release of ``run``; return model.json's metadata."""
    model, info = load_gpt(str(run.path))
    spec = info.get("data", {})
    metadata: dict[str, Any] = {
        "architecture": {"name": "gpt", "config": info["model_config"]},
        "vocab": info["vocab"],
        "dataset": info["dataset"],
        "data": {"text": spec.get("text"), "max_chars": spec.get("max_chars")},
        "split": info["split"],
        "metrics": info["metrics"],
        "preprocessing": {
            "input": "character ids of the vocabulary's characters (vocab.chars[i] is id i)",
            "context_length": info["model_config"]["block_size"],
        },
    }
    if cfg.onnx:
        x = parity_windows(info, cfg.parity_examples)  # (N, block_size)
        source = f"{len(x)} validation windows of {x.shape[1]} characters of {info['dataset']}"
        metadata |= export_onnx_checked(
            model,
            x,
            staging,
            source=source,
            input_name="idx",
            output_name="logits",
            atol=cfg.atol,
            rtol=cfg.rtol,
        )
    save_release(model, metadata, staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    return export_main(argv, ExportConfig, write_release)


if __name__ == "__main__":
    import sys

    sys.exit(main())
