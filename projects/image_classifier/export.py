"""Turn a training run into a release folder that predict, serve and other programs load.

    python -m projects.image_classifier export --run-dir runs/image_classifier/cifar10_jpeg-resnet_small

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle) and everything needed to use them
  (architecture, classes, preprocessing, metrics, the data it was trained on; see dlkit.export);
- ``model.onnx``: the graph for ONNX Runtime (dynamo exporter, any batch size);
- ``model.pt2``: the same as a torch.export ExportedProgram.

Before the release is written, ONNX Runtime and the ExportedProgram must agree with PyTorch on real
test images (the run's dataset when it is found locally, else the files given with ``--images``)
within ``--atol``/``--rtol``; otherwise the export fails and nothing is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.config import parse_config
from dlkit.data import REGISTRY, load_dataset, locate
from dlkit.export import (
    ParityError,
    check_onnx_parity,
    export_onnx,
    export_program,
    load_program,
    read_metadata,
    save_release,
    staged_release,
)
from dlkit.serve import decode_image
from projects.image_classifier.predict import find_images, prepare_image
from projects.image_classifier.train import load_trained

__all__ = ["ExportConfig", "main", "parity_images", "release_from_run"]


@dataclass
class ExportConfig:
    """Export a run folder (written by `train`) as a release: safetensors + JSON, ONNX, torch.export."""

    run_dir: str = field(default="", metadata={"help": "the run folder train wrote (required)"})
    out: str = field(default="", metadata={"help": "the release folder (default: <run-dir>/release)"})
    parity_images: int = field(default=256, metadata={"help": "test images ONNX is checked on"})
    images: tuple[str, ...] = field(
        default=(), metadata={"help": "image files or folders to check on when the dataset is not found"}
    )
    atol: float = 1e-4
    rtol: float = 1e-4
    graphs: bool = field(default=True, metadata={"help": "--no-graphs: only safetensors + model.json"})


def _normalise(x: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Dataset images (N, C, H, W) in [0, 1] with the release's mean and std applied, as predict does."""
    C = x.shape[1]
    mean = torch.tensor(preprocessing.get("mean", [0.0] * C)).view(1, C, 1, 1)
    std = torch.tensor(preprocessing.get("std", [1.0] * C)).view(1, C, 1, 1)
    return (x - mean) / std


def parity_images(
    info: dict[str, Any], run_dir: Path, n: int, images: Sequence[str] = ()
) -> tuple[torch.Tensor, str]:
    """Up to ``n`` real images (N, C, H, W) as the model takes them, and a line saying where from.

    The run's test split when its data is found locally (never downloaded), else the files given.
    """
    name, pre = info["dataset_name"], info["preprocessing"]
    if name in REGISTRY and locate(name) is not None:
        test = load_dataset(name, split="test", download=False).subset(n)
        return _normalise(test.x, pre), f"{len(test)} test images of {info['dataset']}"
    folder = (
        json.loads((run_dir / "config.json").read_text()).get("image_folder")
        if name == "image_folder"
        else None
    )
    if folder and Path(folder).is_dir():
        from projects.image_classifier.data import load_splits

        test = load_splits(image_folder=folder, image_size=pre["size"][0], test_subset=n).test
        return _normalise(test.x, pre), f"{len(test)} held-out images of {folder}"
    decoded = [decode_image(path.read_bytes()) for path in list(find_images(images))[:n]]
    if not decoded:
        raise FileNotFoundError(
            f"no real images to check the exported graphs on: dataset {name!r} is not found locally; "
            "pass some with --images FILE_OR_FOLDER"
        )
    return torch.stack([prepare_image(image, pre) for image in decoded]), f"{len(decoded)} images given"


@torch.no_grad()
def _program_diff(model: nn.Module, path: Path, x: torch.Tensor, atol: float, rtol: float) -> float:
    """The largest |ExportedProgram - PyTorch| over ``x``; ParityError beyond the tolerance."""
    expected, got = model(x).double(), load_program(path)(x).double()
    diff = (got - expected).abs()
    if bool((diff > atol + rtol * expected.abs()).any()):
        raise ParityError(
            f"{path} and PyTorch disagree: max abs diff {float(diff.max()):.3g}", float(diff.max())
        )
    return float(diff.max())


def _release_metadata(info: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    config = run_dir / "config.json"
    return {
        "architecture": {"name": info["model"], "kwargs": info["model_kwargs"]},
        "num_classes": info["num_classes"],
        "in_channels": info["in_channels"],
        "classes": info["classes"],
        "preprocessing": info["preprocessing"],
        "dataset": info["dataset"],
        "dataset_name": info["dataset_name"],
        "metrics": info["metrics"],
        "trained_from": {
            "run_dir": str(run_dir),
            "config": json.loads(config.read_text()) if config.exists() else None,
        },
    }


def release_from_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    num_images: int = 256,
    images: Sequence[str] = (),
    atol: float = 1e-4,
    rtol: float = 1e-4,
    graphs: bool = True,
) -> dict[str, Any]:
    """Write the release of ``run_dir`` to ``out_dir`` (default ``run_dir/release``); return model.json.

    The files are made in a staging folder and moved into place only when every check passed.
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "release"
    model, info = load_trained(run_dir)
    metadata = _release_metadata(info, run_dir)
    with staged_release(out_dir) as staging:
        if graphs:
            x, source = parity_images(info, run_dir, num_images, images)
            export_onnx(model, x[:2], staging / "model.onnx", input_name="images", output_name="logits")
            export_program(model, x[:2], staging / "model.pt2")
            onnx_diff = check_onnx_parity(model, staging / "model.onnx", x, atol=atol, rtol=rtol)
            program_diff = _program_diff(model, staging / "model.pt2", x, atol, rtol)
            metadata["files"] = {"onnx": "model.onnx", "program": "model.pt2"}
            metadata["onnx"] = {"input": "images", "output": "logits", "dynamic_batch": True}
            metadata["parity"] = {
                "images": source, "atol": atol, "rtol": rtol,
                "onnx_max_abs_diff": onnx_diff, "program_max_abs_diff": program_diff,
            }  # fmt: skip
        save_release(model, metadata, staging)
    return read_metadata(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Export ``--run-dir``; exit status 1 when ONNX or torch.export disagree with PyTorch."""
    cfg = parse_config(ExportConfig, argv)
    if not cfg.run_dir:
        raise SystemExit(
            "export needs --run-dir (a folder written by `python -m projects.image_classifier train`)"
        )
    out = cfg.out or str(Path(cfg.run_dir) / "release")
    try:
        meta = release_from_run(
            cfg.run_dir, out, num_images=cfg.parity_images, images=cfg.images,
            atol=cfg.atol, rtol=cfg.rtol, graphs=cfg.graphs,
        )  # fmt: skip
    except (ParityError, FileNotFoundError, FileExistsError) as e:
        print(f"export failed, nothing written: {e}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in Path(out).iterdir())
    print(f"release of {meta['architecture']['name']} ({meta['dataset']}) in {out}: {', '.join(files)}")
    if "parity" in meta:
        p = meta["parity"]
        print(
            f"ONNX Runtime vs PyTorch on {p['images']}: max abs diff {p['onnx_max_abs_diff']:.2e}; "
            f"torch.export {p['program_max_abs_diff']:.2e} (tolerance atol {p['atol']:g}, rtol {p['rtol']:g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
