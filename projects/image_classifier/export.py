"""Turn a training run into a release folder that predict, serve and other programs load.

    python -m projects.image_classifier export --run-dir runs/image_classifier/cifar10-resnet_small

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle) and everything needed to use them
  (architecture, classes, preprocessing, metrics, the data it was trained on; see dlkit.export);
- ``model.onnx``: the graph for ONNX Runtime (dynamo exporter, any batch size);
- ``model.pt2``: the same as a torch.export ExportedProgram.

Before the release is written, ONNX Runtime and the ExportedProgram must agree with PyTorch on real
test images (the run's dataset when it is found locally, else the files given with ``--images``)
within ``--atol``/``--rtol``; otherwise the export fails and nothing is written. ``--no-onnx`` writes
the weights and model.json only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit import project
from dlkit.config import flag
from dlkit.data import REGISTRY, locate
from dlkit.errors import UserError
from dlkit.export import ParityError, export_onnx_checked, export_program, load_program, save_release
from dlkit.runs import RunFolder, load_trained
from dlkit.serve import ImageRejected, decode_image
from projects.image_classifier.data import load_splits, load_test_images
from projects.image_classifier.models import model_from_info
from projects.image_classifier.predict import find_images, prepare_image

__all__ = ["ExportConfig", "main", "parity_images", "write_release"]


@dataclass
class ExportConfig(project.ExportConfig):
    """Export a run folder (written by `train`) as a release: safetensors + JSON, ONNX and torch.export."""

    images: tuple[str, ...] = flag(
        (), help="image files or folders to check the graphs on when the dataset is not here"
    )


def _normalise(x: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Dataset images (N, C, H, W) in [0, 1] with the release's mean and std applied, as predict does."""
    C = x.shape[1]
    mean = torch.tensor(preprocessing.get("mean", [0.0] * C)).view(1, C, 1, 1)
    std = torch.tensor(preprocessing.get("std", [1.0] * C)).view(1, C, 1, 1)
    return (x - mean) / std


def parity_images(
    info: dict[str, Any], run: RunFolder, n: int, images: Sequence[str] = ()
) -> tuple[torch.Tensor, str]:
    """Up to ``n`` real images (N, C, H, W) as the model takes them, and a line saying where from.

    The run's test split when its data is found locally (never downloaded), else the files given.
    """
    name, pre = info["dataset_name"], info["preprocessing"]
    if name in REGISTRY and locate(name) is not None:
        test = load_test_images(name, n)  # small images scaled up as in training
        return _normalise(test.x, pre), f"{len(test)} test images of {info['dataset']}"
    folder = run.read_config().get("image_folder") if name == "image_folder" else None
    if folder and Path(folder).is_dir():
        test = load_splits(
            image_folder=folder, image_size=pre["size"][0], val_fraction=0.0, test_subset=n
        ).test
        return _normalise(test.x, pre), f"{len(test)} held-out images of {folder}"
    decoded = []
    for path in list(find_images(images))[:n]:
        try:
            decoded.append(decode_image(path.read_bytes()))
        except (ImageRejected, OSError) as e:
            raise UserError(f"--images {path}: {getattr(e, 'detail', e)}") from e
    if not decoded:
        raise UserError(
            f"no real images to check the exported graphs on: dataset {name!r} is not found locally; "
            "pass some with --images FILE_OR_FOLDER (or --no-onnx)"
        )
    return torch.stack([prepare_image(image, pre) for image in decoded]), f"{len(decoded)} images given"


@torch.no_grad()
def _program_diff(model: nn.Module, path: Path, x: torch.Tensor, atol: float, rtol: float) -> float:
    """The largest |ExportedProgram - PyTorch| over ``x``; ParityError beyond the tolerance."""
    expected, got = model(x).double(), load_program(path)(x).double()
    diff = (got - expected).abs()
    if bool((diff > atol + rtol * expected.abs()).any()):
        raise ParityError(
            f"{path.name} and PyTorch disagree: max abs diff {float(diff.max()):.3g}", float(diff.max())
        )
    return float(diff.max())


def write_release(cfg: ExportConfig, run: RunFolder, staging: Path) -> dict[str, Any]:
    """Fill ``staging`` with the release of ``run`` (``dlkit.project.export_main`` moves it into place)."""
    model, info = load_trained(run.path, model_from_info)
    metadata: dict[str, Any] = {
        "architecture": {"name": info["model"], "kwargs": info["model_kwargs"]},
        **{
            k: info[k]
            for k in ("num_classes", "in_channels", "classes", "preprocessing", "dataset", "dataset_name")
        },
        "metrics": info["metrics"],
        "trained_from": {"run": run.path.name, "config": run.read_config()},
    }
    if cfg.onnx:
        x, source = parity_images(info, run, cfg.parity_examples, cfg.images)
        checked = export_onnx_checked(
            model,
            x,
            staging,
            source=source,
            input_name="images",
            output_name="logits",
            atol=cfg.atol,
            rtol=cfg.rtol,
        )
        export_program(model, x[:2], staging / "model.pt2")
        checked["files"]["program"] = "model.pt2"
        checked["parity"]["program_max_abs_diff"] = _program_diff(
            model, staging / "model.pt2", x, cfg.atol, cfg.rtol
        )
        metadata.update(checked)
    save_release(model, metadata, staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """Export ``--run-dir``; a UserError (nothing written) when ONNX or torch.export disagree with PyTorch."""
    return project.export_main(argv, ExportConfig, write_release)
