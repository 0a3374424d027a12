"""The classifier's data: a registered dataset or a folder of images, split into train, validation and
test, and a loader that augments whole batches.

``load_splits("cifar10", val_fraction=0.1)`` returns :class:`Splits`: the training images minus a
held-out validation split (a fixed random 10% of them, the same for every seed), the validation
split (model selection: keep-best, early stopping) and the test split (scored once, at the end).
``load_splits(image_folder="photos/")`` reads ``photos/train/<class>/*.jpg`` and
``photos/test/<class>/*.jpg`` (or ``val/``; without either, a fixed 10% of ``photos/<class>/`` is the
test set). Images smaller than 16x16 (scikit-learn's 8x8 digits) are scaled up to 16x16, the smallest
size the networks take.

Quick mode (:func:`quick_dataset`) never needs the network: it uses the dataset asked for when a copy
is on this machine, else CIFAR-10 (JPEG) for CIFAR-10 when that is there, else scikit-learn's digits,
which ship with scikit-learn, and says which.

:class:`BatchLoader` serves batches straight from tensors (on the GPU when the data was moved there)
with random flips, translations and cutout done for the whole batch at once; under torchrun each
process takes its share of every batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlkit.augment import cutout, flip_lr, random_translate
from dlkit.data import REGISTRY, ImageData, choose_dataset, load_dataset, locate, split
from dlkit.errors import UserError
from dlkit.train import TensorBatches, get_rank, get_world_size

__all__ = [
    "DATASETS",
    "MIN_SIZE",
    "BatchLoader",
    "Splits",
    "channel_stats",
    "load_image_folder",
    "load_splits",
    "load_test_images",
    "quick_dataset",
]

DATASETS = ("cifar10", "cifar10_jpeg", "fashion_mnist", "digits")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
MIN_SIZE = 16  # resnet_small pools three times after a 2x2 whitening conv: 16x16 is the smallest input
VAL_SEED = 0  # the validation split does not move with --seed: runs of several seeds select on the same


@dataclass
class Splits:
    train: ImageData
    val: ImageData | None  # None with --val-fraction 0
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

    def sizes(self) -> str:
        val = f"{len(self.val):,} validation, " if self.val is not None else "no validation, "
        return f"{len(self.train):,} train, {val}{len(self.test):,} test images"


def _found(name: str) -> bool:
    try:
        return locate(name) is not None
    except UserError:  # a copy that fails its checksum is not one to use
        return False


def quick_dataset(dataset: str) -> str:
    """The dataset a quick run uses instead of ``dataset``: itself when it is on this machine, else
    CIFAR-10 (JPEG) for CIFAR-10 when that is, else scikit-learn's digits (printed, never downloaded)."""
    if dataset == "cifar10" and not _found("cifar10") and _found("cifar10_jpeg"):
        return choose_dataset(dataset, "cifar10_jpeg", quick=True)
    return choose_dataset(dataset, "digits", quick=True)


def load_splits(
    dataset: str = "cifar10",
    *,
    image_folder: str = "",
    image_size: int = 32,
    val_fraction: float = 0.1,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> Splits:
    """Train, validation and test images of a registered dataset, or of ``image_folder`` resized to
    ``image_size``. ``train_subset`` cuts the training split first; the validation split is then a
    fixed random ``val_fraction`` of what is left."""
    if image_folder:
        root = Path(image_folder)
        train, test = _folder_splits(root, image_size)
        name, human = "image_folder", f"image folder {root.name}"
    else:
        if dataset not in DATASETS:
            raise UserError(
                f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)} or --image-folder"
            )
        train, test = load_dataset(dataset, split="train"), load_dataset(dataset, split="test")
        name, human = dataset, REGISTRY[dataset].title
    if train_subset:
        train = train.subset(train_subset, seed)
    if test_subset:
        test = test.subset(test_subset, seed)
    train, test = _at_least(train, MIN_SIZE), _at_least(test, MIN_SIZE)
    val = None
    if val_fraction > 0:
        n_val = round(val_fraction * len(train))
        if not 1 <= n_val < len(train):
            raise UserError(
                f"--val-fraction {val_fraction:g} of {len(train):,} training images leaves no validation "
                "or no training images: choose another fraction, or 0 for no validation split"
            )
        val, train = split(train, n_val, seed=VAL_SEED)
        val.source = f"{train.source}; validation: {n_val:,} held out (fixed, seed {VAL_SEED})"
    return Splits(train, val, test, name, human)


def load_test_images(dataset: str, n: int) -> ImageData:
    """``n`` test images of a registered dataset as the model takes them (e.g. to check an export),
    without loading the training split."""
    return _at_least(load_dataset(dataset, split="test").subset(n), MIN_SIZE)


def _at_least(data: ImageData, size: int) -> ImageData:
    """Images smaller than ``size`` (8x8 digits) scaled up to it, bilinearly; larger ones as they are."""
    H, W = data.x.shape[-2:]
    if min(H, W) >= size:
        return data
    scale = size / min(H, W)
    new = (max(size, round(H * scale)), max(size, round(W * scale)))
    x = F.interpolate(data.x, size=new, mode="bilinear", align_corners=False).clamp_(0, 1)
    return ImageData(x, data.y, data.classes, f"{data.source}; scaled up to {new[0]}x{new[1]}")


def _folder_splits(root: Path, size: int) -> tuple[ImageData, ImageData]:
    if not root.is_dir():
        raise UserError(f"--image-folder {root}: no such folder")
    for test_name in ("test", "val", "valid"):
        if (root / "train").is_dir() and (root / test_name).is_dir():
            train = load_image_folder(root / "train", size)
            return train, load_image_folder(root / test_name, size, classes=train.classes)
    whole = load_image_folder(root, size)  # no split on disk: hold out a fixed random 10% as the test set
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
        raise UserError(f"{folder} has no class subfolders (expected {folder}/<class>/<image>.jpg)")
    files = [
        (f, label)
        for label, name in enumerate(classes)
        for f in sorted((folder / name).glob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {folder}")
    pixels = np.empty((len(files), size, size, 3), np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as image:
                pixels[i] = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except (OSError, SyntaxError, ValueError) as e:
            raise UserError(f"{f} could not be read as an image ({e}): remove or replace it") from e
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
    NHWC-laid-out batches. It stands in for a DataLoader in ``dlkit.train.train_loop``.

    Under torchrun every process draws the same order (the same seed) and keeps every N-th example of
    each batch, so that the processes share each global batch of ``batch_size``, as ``make_loader``'s
    DistributedSampler does for a dataset.
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
        super().__init__(x, y, batch_size, shuffle=shuffle, drop_last=drop_last)
        self.flip, self.translate, self.cutout, self.channels_last = flip, translate, cutout, channels_last
        self.rank, self.world_size = get_rank(), get_world_size()
        if shuffle and drop_last and batch_size % self.world_size:
            raise UserError(f"--batch-size {batch_size} must be divisible by the {self.world_size} processes")

    def __iter__(self):  # noqa: ANN204 - an iterator of (x, y) batches
        for x, y in super().__iter__():
            if self.world_size > 1:
                x, y = x[self.rank :: self.world_size], y[self.rank :: self.world_size]
            yield self._augment(x), y

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
