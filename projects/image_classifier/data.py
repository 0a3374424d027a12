"""The classifier's data: a registered dataset or a folder of images, and a loader that augments batches.

``load_splits("cifar10_jpeg")`` returns the train and test :class:`dlkit.data.ImageData` (float images
(N, C, H, W) in [0, 1]); ``load_splits(image_folder="photos/")`` reads ``photos/train/<class>/*.jpg``
and ``photos/test/<class>/*.jpg`` (or ``val/``; without either, a fixed 10% of ``photos/<class>/`` is
held out). :class:`BatchLoader` then serves batches straight from tensors, on the GPU when the data
was moved there, with random flips and translations done for the whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlkit.augment import cutout, flip_lr, random_translate
from dlkit.data import REGISTRY, ImageData, load_dataset
from dlkit.train import TensorBatches

__all__ = ["DATASETS", "BatchLoader", "Splits", "channel_stats", "load_image_folder", "load_splits"]

DATASETS = ("cifar10", "cifar10_jpeg", "fashion_mnist")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass
class Splits:
    train: ImageData
    test: ImageData
    dataset_name: str  # a registry name, or "image_folder"
    dataset: str  # what a report calls it, e.g. "CIFAR-10 (JPEG)"

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        C, H, W = self.train.x.shape[1:]
        return C, H, W


def load_splits(
    dataset: str = "cifar10_jpeg",
    *,
    image_folder: str | None = None,
    image_size: int = 32,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> Splits:
    """Train and test images of a registered dataset, or of ``image_folder`` resized to ``image_size``."""
    if image_folder:
        root = Path(image_folder)
        train, test = _folder_splits(root, image_size)
        name, human = "image_folder", f"image folder {root.name}"
    else:
        if dataset not in DATASETS:
            raise KeyError(f"unknown dataset {dataset!r}; choose one of {DATASETS} or pass --image-folder")
        train, test = load_dataset(dataset, split="train"), load_dataset(dataset, split="test")
        name, human = dataset, REGISTRY[dataset].title
    if train_subset:
        train = train.subset(train_subset, seed)
    if test_subset:
        test = test.subset(test_subset, seed)
    return Splits(train, test, name, human)


def _folder_splits(root: Path, size: int) -> tuple[ImageData, ImageData]:
    for test_name in ("test", "val", "valid"):
        if (root / "train").is_dir() and (root / test_name).is_dir():
            train = load_image_folder(root / "train", size)
            return train, load_image_folder(root / test_name, size, classes=train.classes)
    whole = load_image_folder(root, size)  # no split on disk: hold out a fixed random 10%
    perm = torch.randperm(len(whole), generator=torch.Generator().manual_seed(0))
    n_test = max(len(whole) // 10, 1)
    parts = [(perm[n_test:].sort().values, "90% for training"), (perm[:n_test].sort().values, "10% held out")]
    train, test = (ImageData(whole.x[i], whole.y[i], whole.classes, f"{whole.source}; {p}") for i, p in parts)
    return train, test


def load_image_folder(folder: str | Path, size: int = 32, classes: list[str] | None = None) -> ImageData:
    """Every image of ``folder/<class>/``, as RGB resized to ``size`` x ``size``: x (N, 3, size, size)."""
    from PIL import Image

    folder = Path(folder)
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{folder} has no class subfolders (expected {folder}/<class>/<image>.jpg)")
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((folder / name).glob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {folder}")
    pixels = np.empty((len(files), size, size, 3), np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as image:
            pixels[i] = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, size, size)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return ImageData(x, y, list(classes), f"{len(files):,} images from {folder}")


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of images (N, C, H, W), rounded to 4 digits for model_info.json."""
    x = x[:10_000].double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]


class BatchLoader(TensorBatches):
    """:class:`dlkit.train.TensorBatches` with the project's batched augmentation: random flips,
    translations and cutout of a whole batch at a time; ``channels_last`` hands the model
    NHWC-laid-out batches. It stands in for a DataLoader in ``dlkit.train.fit``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        flip: bool = False,
        translate: int = 0,
        cutout: int = 0,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, augment=self._augment)
        self.flip, self.translate, self.cutout, self.channels_last = flip, translate, cutout, channels_last

    def _augment(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        if self.flip:
            x = flip_lr(x)
        if self.translate:
            x = random_translate(x, self.translate)
        if self.cutout:
            x = cutout(x, self.cutout)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
