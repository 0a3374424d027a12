"""Turn a training run into a release folder that ``predict``, ``serve`` and other programs load.

    python -m projects.fraud_detector export --run-dir runs/fraud_detector/creditcard-mlp

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors``: the whole scorer, raw features in, score out: the log transform's mask and the
  scaling statistics (buffers), the network, the score's scale;
- ``model.json``: what a user needs to use it right: the feature names in the order the model reads them,
  the scaling statistics again as plain numbers, the score's meaning, the threshold and the costs it
  was chosen with, the validation metrics, the data it was trained on (named, without paths);
- ``model.onnx``: the same scorer, ``features`` (batch, F) float32 -> ``score`` (batch,) float32.

Before anything is written, ONNX Runtime must agree with PyTorch on ``--parity-examples`` real rows (the
run's test rows) within ``--atol``/``--rtol`` (relative: scores span decades); otherwise nothing is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit.export import export_onnx_checked, save_release
from dlkit.project import ExportConfig as ProjectExportConfig
from dlkit.project import export_main
from dlkit.runs import RunFolder
from projects.fraud_detector.evaluate import run_data
from projects.fraud_detector.train import load_run

__all__ = ["ExportConfig", "main", "release_metadata", "write_release"]


@dataclass
class ExportConfig(ProjectExportConfig):
    """Export a run folder (written by `train`) as a release: safetensors + model.json with the feature
    order, scaling statistics and threshold, and ONNX checked against PyTorch on real rows."""


def release_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """model.json's content (before save_release adds the weights' digest and versions)."""
    pre = info["preprocessing"]
    return {
        "architecture": {"name": info["net"]["model"], **info["net"]},
        "net": info["net"],
        "features": pre["features"],
        "preprocessing": {
            **pre,
            "how": "x -> (t(x) - center) / scale per feature, t(x) = sign(x) log(1 + |x|) on log1p_columns",
        },
        "score": info["score"],
        "threshold": info["threshold"],
        "costs": info["costs"],
        "dataset": info["dataset"],
        "split": info["split"],
        "labelled": info["labelled"],
        "metrics": info["metrics"],
        "training": info.get("training", {}),
    }


def write_release(cfg: ExportConfig, run: RunFolder, staging: Path) -> dict[str, Any]:
    """Fill ``staging`` with the release of ``run``; return model.json's metadata."""
    scorer, info = load_run(str(run.path))
    metadata = release_metadata(info)
    if cfg.onnx:
        data, split = run_data(info)
        rows = split.test[: cfg.parity_examples]
        x = data.x[rows]
        metadata |= export_onnx_checked(
            scorer,
            x,
            staging,
            source=f"{len(x)} test rows of {data.name}",
            input_name="features",
            output_name="score",
            atol=cfg.atol,
            rtol=cfg.rtol,
        )
    save_release(scorer, metadata, staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    return export_main(argv, ExportConfig, write_release)


if __name__ == "__main__":
    import sys

    sys.exit(main())
