"""Classify image files with a release folder: the top-k classes and their probabilities.

    python -m projects.image_classifier predict photo.jpg photos/ --release runs/.../release --top-k 3

Any image Pillow reads works, whatever its size or mode (RGBA, palette, grayscale, 16-bit, a phone
photo stored sideways with an EXIF orientation): :func:`prepare_image` turns it into exactly what the
model saw in training, per the release's ``preprocessing``. A file that cannot be read gets a message
on stderr and the others still get their predictions (the exit status is then 1).

:class:`ImagePredictor` loads a release once and classifies lists of PIL images; the server shares it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch import nn

from dlkit import project
from dlkit.config import ConfigError, build_parser, check_config, flag
from dlkit.errors import UserError
from dlkit.serve import ImageRejected, decode_image
from projects.image_classifier.models import model_from_metadata

__all__ = ["ImagePredictor", "PredictConfig", "find_images", "main", "prepare_image"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


# --- Preprocessing: any image -> what the model was trained on ---------------------------------------


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says (a no-op once done: the tag is removed)."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):  # unreadable EXIF: as stored
        return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale scaled to 8 bits (Pillow's convert("L") would clip them)."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    a = np.asarray(image, dtype=np.float64)
    top = float(a.max(initial=0))
    peak = 65535.0 if image.mode.startswith("I;16") or top > 255 else 255.0 if top > 1 else 1.0
    return Image.fromarray(np.clip(np.rint(a / peak * 255), 0, 255).astype(np.uint8), "L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels shown over white, as an image viewer shows them; opaque images unchanged."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def prepare_image(image: Image.Image, preprocessing: Mapping[str, Any]) -> torch.Tensor:
    """A PIL image as the model's input (C, H, W) float32, made the way the training images were.

    The image is turned upright (EXIF), 16-bit scaled to 8, resized, then transparency is shown over
    white. Training images are 8-bit RGB (or greyscale), resized to ``size`` with bilinear filtering
    (image folders; CIFAR-10 and Fashion-MNIST already have the size), divided by 255, then normalised
    with ``mean`` and ``std`` (0 and 1 when the model normalises inside, see models.py). The resize
    comes before any other copy, so a 36-megapixel upload is copied only once it is small.
    """
    H, W = preprocessing["size"]
    C = preprocessing["channels"]
    image = _to_8bit(_upright(image))
    if image.mode not in ("RGB", "RGBA", "L", "LA"):  # palette, CMYK, 1-bit...: resized as RGB(A)
        transparent = image.mode in ("PA", "RGBa", "La") or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    if image.size != (W, H):
        image = image.resize((W, H), RESAMPLING[preprocessing.get("resize", "bilinear")])
    image = _flatten_alpha(image)
    mode = "RGB" if C == 3 else "L"
    if image.mode != mode:
        image = image.convert(mode)
    pixels = np.asarray(image, dtype=np.uint8).reshape(H, W, C)  # (H, W, C)
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255)  # (C, H, W) in [0, 1]
    mean = torch.tensor(preprocessing.get("mean", [0.0] * C), dtype=torch.float32).view(C, 1, 1)
    std = torch.tensor(preprocessing.get("std", [1.0] * C), dtype=torch.float32).view(C, 1, 1)
    return (x - mean) / std


# --- The predictor: a release loaded once ------------------------------------------------------------


class ImagePredictor(project.ReleasePredictor):
    """A release's model and metadata, loaded once: ``predict(images, top_k)`` for lists of PIL images.

    Safe to call from many threads: preprocessing runs in the caller's thread, the forward passes one
    at a time (on a CPU, concurrent passes would only fight over the same cores; the server batches
    concurrent requests instead, see serve.py).
    """

    build_model = staticmethod(model_from_metadata)

    def __init__(self, model: nn.Module, metadata: dict[str, Any], device: torch.device) -> None:
        super().__init__(model, metadata, device)
        # On a GPU, convolutions run fastest on channels-last tensors (as in training); fp32 is kept
        # so that the answers are those the release was checked with.
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format).eval()
        self.classes: list[str] = list(metadata["classes"])
        self.preprocessing: dict[str, Any] = metadata["preprocessing"]
        self._lock = threading.Lock()

    @classmethod
    def from_release(cls, release: str | Path, device: str | torch.device = "auto") -> ImagePredictor:
        """The release's model and metadata (a missing or broken release: a one-line ReleaseError)."""
        predictor = super().from_release(release, device)
        assert isinstance(predictor, ImagePredictor)
        return predictor

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The model's input (C, H, W) for ``image``, made as the training images were."""
        return prepare_image(image, self.preprocessing)

    @torch.inference_mode()
    def probabilities_of(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, num_classes), on the CPU, of prepared inputs ``x`` (N, C, H, W)."""
        with self._lock:
            logits = self.model(x.to(self.device, memory_format=self.memory_format))  # (N, num_classes)
        return logits.float().softmax(dim=1).cpu()

    def probabilities(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Class probabilities (N, num_classes) of PIL ``images``, on the CPU."""
        return self.probabilities_of(torch.stack([self.prepare(image) for image in images]))

    def top_classes(self, probabilities: torch.Tensor, top_k: int = 3) -> list[dict[str, Any]]:
        """The ``top_k`` classes of one image's probabilities (num_classes,), most likely first."""
        values, indices = probabilities.topk(min(top_k, len(self.classes)))
        return [
            {"label": self.classes[i], "probability": p}
            for p, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def predict(self, images: Sequence[Image.Image], top_k: int = 3) -> list[list[dict[str, Any]]]:
        """For each image, its ``top_k`` classes as ``{"label", "probability"}``, most likely first."""
        if not images:
            return []
        return [self.top_classes(row, top_k) for row in self.probabilities(images)]


# --- The command line --------------------------------------------------------------------------------


@dataclass
class PredictConfig(project.PredictConfig):
    """Classify images (files, or folders searched recursively) with a release folder."""

    top_k: int = 3
    max_megapixels: float = flag(100.0, help="refuse larger images (decoding costs memory)", above=0)


def find_images(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Each file named, and every image file (by suffix) under each folder named, in sorted order."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path  # named explicitly: tried whatever its suffix, and reported if unreadable


def _read(path: Path, max_pixels: int) -> Image.Image | str:
    """The decoded image, or why it could not be read."""
    try:
        return decode_image(path.read_bytes(), max_pixels=max_pixels)
    except ImageRejected as e:
        return e.detail
    except OSError as e:
        return f"cannot read the file ({e.strerror or e})"


def _batches(paths: Iterator[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in paths:
        batch.append(path)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse(argv: Sequence[str] | None) -> tuple[PredictConfig, list[str]]:
    parser = build_parser(PredictConfig)
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER")
    given = vars(parser.parse_args(argv))
    paths = given.pop("paths")
    cfg = PredictConfig(**given)
    try:
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))
    return cfg, paths


def main(argv: Sequence[str] | None = None) -> int:
    """Print the top-k classes of each image; 0 if all were classified, 1 if some could not be read."""
    cfg, paths = _parse(argv)
    predictor = ImagePredictor.from_release(cfg.release, cfg.device)
    results: list[dict[str, Any]] = []
    failed = 0
    for batch in _batches(find_images(paths), cfg.batch_size):
        read = [(path, _read(path, int(cfg.max_megapixels * 1e6))) for path in batch]
        good = [(path, image) for path, image in read if isinstance(image, Image.Image)]
        predictions = predictor.predict([image for _, image in good], cfg.top_k)
        found = dict(zip([path for path, _ in good], predictions, strict=True))
        for path, image in read:
            if isinstance(image, str):
                failed += 1
                print(f"{path}: not classified: {image}", file=sys.stderr)
                results.append({"file": str(path), "error": image})
            else:
                results.append({"file": str(path), "predictions": found[path]})
                if not cfg.json:
                    print(
                        f"{path}: " + ", ".join(f"{p['label']} {p['probability']:.3f}" for p in found[path])
                    )
    if not results:
        raise UserError(f"no image files found in {', '.join(paths)}")
    if cfg.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0
