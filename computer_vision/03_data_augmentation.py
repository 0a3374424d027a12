# %% [markdown]
# # 03 · Data augmentation: more training images for free
#
# A CNN trained on a few thousand images learns them by heart: training accuracy near 100%, test
# accuracy far below. Augmentation shows it a new version of each image every epoch (mirrored,
# shifted, recoloured, partly hidden), so memorising stops paying and the features that survive
# those changes are the ones that generalise.
#
# **What you will learn**
# - the `torchvision.transforms.v2` pipeline: RandomHorizontalFlip, RandomCrop with padding,
#   ColorJitter, TrivialAugmentWide, RandomErasing (Cutout), and MixUp / CutMix on whole batches;
# - what each does to one image, draw after draw, and what CutMix does to the labels;
# - how much augmentation buys on a small CIFAR-10 training set: the same CNN, epochs and seed
#   with and without it, and the train-test gap of each;
# - why fast pipelines augment whole batches on the GPU (`dlkit.augment`) instead of one image at a
#   time in a `DataLoader`, measured in images per second; and test-time augmentation.

# %%
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dlkit.augment import cutout, flip_lr, random_translate, tta_logits
from dlkit.config import flag
from dlkit.data import ImageData, load_dataset, locate
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.nets import make_cnn
from dlkit.plots import image_grid, plot_curves
from dlkit.train import History, evaluate, fit, make_loader


@dataclass
class Config(LessonConfig):
    num_train: int = flag(4_000, help="training images: few enough for the CNN to overfit without them",
                          min=10)  # fmt: skip
    num_test: int = flag(2_000, help="test images", min=10)
    width: int = flag(
        16, help="channels of the first conv block; the next three have 2x, 4x, 4x", min=1, max=256
    )
    batch_size: int = 128
    num_epochs: int = flag(25, help="epochs of each of the two runs", min=1, max=500)
    lr: float = flag(2e-3, help="the peak of the one-cycle schedule (AdamW)", above=0, max=1)
    weight_decay: float = 5e-4
    num_speed: int = flag(4_096, help="images per speed measurement", min=1)
    speed_batch_size: int = flag(256, help="images per batch in the speed measurement", min=1)


QUICK = {"num_train": 500, "num_test": 500, "width": 8, "batch_size": 32, "num_epochs": 4, "num_speed": 512}
lesson = Lesson("computer_vision/03_data_augmentation", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick


def pick_dataset() -> str:
    """CIFAR-10 (JPEG) when found locally; else full mode downloads CIFAR-10 and quick mode falls back."""
    if locate("cifar10_jpeg") is not None:
        return "cifar10_jpeg"
    if full:
        return "cifar10"
    return "fashion_mnist" if locate("fashion_mnist") is not None else "digits"


name = pick_dataset()
train_all = load_dataset(name, split="train")
train = train_all.subset(cfg.num_train, seed=cfg.seed)
test = load_dataset(name, split="test").subset(cfg.num_test, seed=cfg.seed)
lesson.uses_data(name, f"{train.source}; {test.source}")
C, H, W = train.x.shape[1:]  # (3, 32, 32) for CIFAR-10
num_classes, pad = len(train.classes), max(1, H // 8)  # shift by up to 4 px on 32 x 32 images
flip_p = 0.0 if name == "digits" else 0.5  # a mirrored 3 is no longer a 3
print(f"{name}: train {tuple(train.x.shape)}, test {tuple(test.x.shape)}, pad {pad}")

# %% [markdown]
# Quick mode uses a few hundred CIFAR-10 images when they are found, else Fashion-MNIST or the 8 x 8
# digits that ship with scikit-learn. Digits are never mirrored (`flip_p = 0`): a mirrored 3 is not a
# 3. An augmentation must keep the label true.
#
# ## The v2 transforms, one image, many draws
#
# Every v2 transform takes a tensor image (C, H, W) (or a batch) and draws new random parameters on
# each call. `Compose` chains them; the order matters: erase last, so the hole is not recoloured.

# %%
cutout_area = 0.25  # Cutout on CIFAR-10 hides a 16 x 16 square: a quarter of the image
transforms: dict[str, Any] = {
    "flip": v2.RandomHorizontalFlip(p=flip_p),
    "crop": v2.RandomCrop((H, W), padding=pad, padding_mode="reflect"),
    "jitter": v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "trivial": v2.TrivialAugmentWide(),  # one random op at a random strength (Müller & Hutter, 2021)
    "erase": v2.RandomErasing(p=1.0, scale=(cutout_area, cutout_area), ratio=(1.0, 1.0), value=0.0),
}
transforms["all"] = v2.Compose([*list(transforms.values())[:4], v2.RandomErasing(p=0.5, value=0.0)])
num_draws = 8
image = test.x[0]  # (C, H, W) in [0, 1]
draws = {key: torch.stack([t(image) for _ in range(num_draws)]) for key, t in transforms.items()}
grid = torch.cat(list(draws.values()))  # (6 * num_draws, C, H, W)
labels = [key if i == 0 else "" for key in draws for i in range(num_draws)]
lesson.savefig(image_grid(grid, labels, ncols=num_draws), "one_image_many_draws")

distinct = {key: len(torch.unique(d.flatten(1), dim=0)) for key, d in draws.items()}
print("distinct images out of", num_draws, "draws:", distinct)
lesson.record("pipeline_distinct_draws", distinct["all"], min=num_draws - 1)
lesson.record("flip_distinct_draws", distinct["flip"], min=1, max=2)  # mirrored or not: nothing else
in_range = draws["all"].min() >= 0 and draws["all"].max() <= 1
lesson.record("pipeline_stays_in_0_1", float(in_range), min=1)  # still an image in [0, 1]

# %% [markdown]
# What to notice: a flip gives one of two images, a crop one of `(2 pad + 1)^2` shifts (the border
# filled by reflection, not black), ColorJitter changes colours but never geometry. TrivialAugment
# picks one of 14 operations (rotate, shear, posterize, equalize...) at a random strength, with no
# settings to tune. Erasing hides a square, so the model cannot rely on a single part of the object.
# Stacked together ("all") they leave some images barely recognisable: the stronger the
# augmentation, the longer the training it needs. In 25-epoch runs like the one below, adding
# TrivialAugment to flip and crop cost about 4 points of test accuracy, and Cutout about 1.
#
# ## MixUp and CutMix: augmentations of a batch
#
# These two blend two images **and their labels**, so they act on a batch (B, C, H, W) with its labels
# (B,) and return soft labels (B, num_classes). v2 pairs image i with image i - 1 of the batch. MixUp
# (Zhang et al., 2018) averages whole images: `lam x_i + (1 - lam) x_(i-1)`. CutMix (Yun et al., 2019)
# pastes a box of `x_(i-1)` into `x_i` and gives the label `lam` = the share of pixels left.

# %%
X, y = test.x[:num_draws], test.y[:num_draws]  # (B, C, H, W), (B,)
mixers = {"mixup": v2.MixUp(num_classes=num_classes), "cutmix": v2.CutMix(num_classes=num_classes)}
rows, captions = [], []
for key, mix in mixers.items():
    X_mixed, soft = mix(X, y)  # (B, C, H, W), (B, num_classes)
    rows.append(X_mixed)
    for weights in soft:
        top = weights.topk(2)
        captions.append(
            ", ".join(f"{w:.0%} {train.classes[c][:5]}" for w, c in zip(*top, strict=True) if w > 0)
        )
    lesson.record(f"{key}_label_sum_error", (soft.sum(dim=1) - 1).abs().max(), max=1e-6)
lesson.savefig(image_grid(torch.cat(rows), captions, ncols=num_draws), "mixup_cutmix")

# Which pixels came from where? Tag each image with an extra channel holding its index, and give
# each image its own "class" (its index) so that the soft label says how much of it is left.
ids = torch.arange(num_draws)
tagged = torch.cat([X, ids.view(-1, 1, 1, 1).expand(-1, 1, H, W).float()], dim=1)  # (B, C + 1, H, W)
tagged_mixed, soft = v2.CutMix(num_classes=num_draws)(tagged, ids)
kept = (tagged_mixed[:, -1] == ids.view(-1, 1, 1)).float().mean(dim=(1, 2))  # (B,) share of own pixels
print(f"CutMix kept {kept[0]:.3f} of each image; its label weight is {soft[0, 0]:.3f}")
lesson.record("cutmix_label_minus_pixel_share", (soft.diagonal() - kept).abs().max(), max=1e-6)

# %% [markdown]
# What to notice: the captions are the soft labels, and they sum to 1 (a pair of the same class
# keeps a one-hot label). CutMix's label weight is exactly the share of the image's own pixels that
# survived the paste. Both are trained with
# cross-entropy against the soft labels (`F.cross_entropy` accepts class probabilities as targets);
# they pay off in long training runs, so the comparison below uses the classic flip and crop.
#
# ## Measured: the same CNN with and without augmentation
#
# A small CNN (`dlkit.nets.make_cnn`: four conv blocks with batch norm, the first three halving the
# image, then global max pooling), the same seed, data order, schedule and number of epochs; the only
# difference is the training `Dataset`: plain tensors, or tensors passed through a v2 transform each
# time `__getitem__` is called, i.e. a new draw every epoch.


# %%
class Transformed(Dataset):
    """``data``'s images passed through ``transform`` each time one is read: (C, H, W), label."""

    def __init__(self, data: ImageData, transform: Any) -> None:
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.data.x[i]), self.data.y[i]


def train_cnn(label: str, dataset: Dataset) -> tuple[nn.Module, History]:
    """AdamW with a one-cycle schedule for num_epochs; bf16 autocast where it pays (fit's default)."""
    seed_everything(cfg.seed)  # the same initial weights for every run: four conv blocks, three pools
    model = make_cnn(C, num_classes, [cfg.width * k for k in (1, 2, 4, 4)], pools=3)  # (B, num_classes)
    model = model.to(device, memory_format=torch.channels_last)  # the layout fast GPU convs want
    seed_everything(cfg.seed)  # the same shuffling order for both runs
    loader = make_loader(dataset, cfg.batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.num_epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    kwargs = {"num_epochs": cfg.num_epochs, "scheduler": scheduler, "scheduler_interval": "batch"}
    start = time.perf_counter()
    history = fit(model, optimizer, loader, test_loader, loss_fn=F.cross_entropy, device=device, **kwargs)
    print(f"{label}: test acc {history.last['val_acc']:.4f} ({time.perf_counter() - start:.0f} s)")
    return model, history


test_loader = make_loader(test.tensor_dataset(), 1024, shuffle=False)
train_eval_loader = make_loader(train.tensor_dataset(), 1024, shuffle=False)  # un-augmented
train_transform = v2.Compose([transforms["crop"], transforms["flip"]])
runs = {
    "no aug": train_cnn("no aug", train.tensor_dataset()),
    "aug": train_cnn("aug", Transformed(train, train_transform)),
}

# %% [markdown]
# Both models are scored the same way after training: in eval mode on the un-augmented training
# images and on the test images. The gap between the two is how much the model memorised.

# %%
acc, gap = {}, {}
for label, (model, history) in runs.items():
    acc[label] = history.last["val_acc"]
    gap[label] = evaluate(model, F.cross_entropy, train_eval_loader, device)["acc"] - acc[label]
    print(f"{label:<8} test acc {acc[label]:.4f}  train-test gap {gap[label]:.4f}")
curves = {
    f"{label}, {split}": h.column(f"{key}_acc")
    for label, (_, h) in runs.items()
    for split, key in (("train", "train"), ("test", "val"))
}
fig = plot_curves(curves, title=f"{len(train):,} training images", xlabel="epoch", ylabel="accuracy")
lesson.savefig(fig, "accuracy_with_and_without_augmentation")
chance = 1 / num_classes
lesson.record("acc_no_aug", acc["no aug"], min=0.5 if full else 0.25, chance=chance)
lesson.record("acc_aug", acc["aug"], min=0.6 if full else 0.25, chance=chance)
if full:  # quick mode's few epochs are too few for augmentation to pay: there it is only printed
    lesson.record("aug_minus_no_aug", acc["aug"] - acc["no aug"], min=0.03)
    lesson.record("gap_no_aug", gap["no aug"], min=0.2)  # it memorised its training images
    lesson.record("gap_reduction", gap["no aug"] - gap["aug"], min=0.1)

# %% [markdown]
# What to notice (full mode): without augmentation the training accuracy reaches 100% long before
# the last epoch while the test accuracy stalls: the gap printed above is tens of points. With flip
# and crop the model never sees the same image twice; its gap shrinks and its test accuracy ends
# several points higher, for the same epochs. (The "aug, train" curve is measured on augmented
# images, which are harder than the originals.) In quick mode the epochs are too few: augmentation
# only slows the start of training there, so the comparison is printed, not checked.
#
# ## Per image on the CPU, or a whole batch on the device?
#
# A `DataLoader` calls `__getitem__` once per image: a few Python calls and small tensor ops each,
# then `collate` stacks them. `dlkit.augment` does the same flip, shift and Cutout for a whole batch
# (B, C, H, W) in a handful of tensor ops on the batch's device, which is how the fast training
# scripts (and this course's image-classifier project) feed a GPU. We time both on the same images.

# %%
cutout_size = round(H * cutout_area**0.5)  # 16 px on 32 x 32 images
per_sample = v2.Compose([transforms["flip"], transforms["crop"], transforms["erase"]])
speed_data = train_all.subset(cfg.num_speed, seed=cfg.seed + 1)


def batched(X: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """flip, shift and Cutout for the whole batch X (B, C, H, W) at once, on X's device."""
    return cutout(random_translate(flip_lr(X, flip_p, generator), pad, generator), cutout_size, generator)


def images_per_s(make_batches: Any, repeats: int = 3) -> float:
    """Images per second to produce every augmented batch of speed_data on the device.

    The best of ``repeats`` passes: on a shared machine the fastest pass is the least disturbed one.
    """
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # GPU work is asynchronous: wait for it before each clock read
        start, n = time.perf_counter(), 0
        for X in make_batches():
            n += len(X)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return n / min(seconds)


loader = DataLoader(Transformed(speed_data, per_sample), cfg.speed_batch_size, shuffle=False)
X_all = speed_data.x.to(device)  # (N, C, H, W): the whole subset lives on the device
batches = X_all.split(cfg.speed_batch_size)
batched(batches[0])  # warm-up: the first call pays for allocation and kernel selection
speed = {
    "per_sample": images_per_s(lambda: (X.to(device) for X, _ in loader)),
    "batched": images_per_s(lambda: (batched(X) for X in batches)),
}
ratio = speed["batched"] / speed["per_sample"]  # printed, not checked: speeds depend on the machine
print({k: f"{v:,.0f} images/s" for k, v in speed.items()}, f"batched: {ratio:.1f}x faster")

generator = torch.Generator(device=device).manual_seed(cfg.seed)
flipped = (flip_lr(X_all, flip_p, generator) != X_all).flatten(1).any(dim=1).float().mean()
lesson.record("flipped_share", flipped, min=flip_p - 0.1, max=flip_p + 0.1)  # drawn per image
both = torch.cat(
    [torch.stack([per_sample(image) for _ in range(num_draws)]), batched(image.expand(num_draws, -1, -1, -1))]
)
lesson.savefig(
    image_grid(both, ["v2, per image"] + [""] * 7 + ["dlkit.augment, batched"] + [""] * 7),
    "per_sample_vs_batched",
)

# %% [markdown]
# What to notice: the two rows draw from the same distribution (flip, shift by up to `pad` pixels,
# a square hole; dlkit's hole may hang over the border, as in the Cutout paper, v2's stays inside).
# The batched path is several times faster even on a CPU (the line above says how much on this one),
# and the gap grows on a GPU, where per-image Python work leaves the device idle. With the data on
# the device and batched augmentation, a small CNN reaches 94% on CIFAR-10 in seconds on one GPU
# (Keller Jordan's airbench).
#
# ## Test-time augmentation
#
# A model trained on mirrored images can also be *asked* about the mirrored test image:
# `tta_logits` averages the logits of each image and its mirror, one more forward pass per batch.

# %%
model = runs["aug"][0].eval()
X_test, y_test = test.x.to(device), test.y.to(device)
with autocast(device, resolve_amp_dtype(None, device)):  # bf16 where it pays, as in training
    acc_plain = (model(X_test).argmax(1) == y_test).float().mean().item()
    acc_tta = (tta_logits(model, X_test, flip=flip_p > 0).argmax(1) == y_test).float().mean().item()
print(f"aug model: test acc {acc_plain:.4f}, with flip TTA {acc_tta:.4f}")

# %% [markdown]
# What to notice: the mirror average adds a little accuracy in full mode for the price of a second
# forward pass. It only makes sense for augmentations the model was trained with: digits, never
# mirrored, are not averaged with their mirror.
#
# ## What you measured
#
# The same CNN, epochs and seed with and without flip and crop: the test accuracy of each, how much of
# its training set each memorised (the train-test gap), the mirror TTA on top; and per-image v2
# against batched `dlkit.augment` in images per second (printed). Augmentation is the cheapest
# regulariser there is: it costs no parameters, and batched on the device it costs almost no time.

# %%
if full:  # in quick mode the flip average is a coin toss on a few hundred images: printed above
    lesson.record("acc_tta", acc_tta, min=0.6, chance=chance)
    lesson.record("tta_minus_plain", acc_tta - acc_plain, min=0.002)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check computer_vision/03` in a terminal). The
# checks compare MixUp and CutMix with `torchvision.transforms.v2`'s on the same batch.

# %% tags=["exercise"]
import torch


def random_hflip(images: torch.Tensor, masks: torch.Tensor, p: float, generator: torch.Generator):
    """Mirror each sample left-right with probability p: images (B, C, H, W) and masks (B, H, W) together.

    Draw one coin per sample, `flip = torch.rand(len(images), generator=generator) < p`, and flip the
    image and its segmentation mask of the samples where it is True (a mask must stay on its image);
    return `(images, masks)`. Hint: `torch.where` with `flip` broadcast over the other dimensions.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float, perm: torch.Tensor):
    """MixUp a batch: return `(x_mixed, y_mixed)`, x (B, C, H, W), y (B,) class indices -> (B, num_classes).

    Each sample i becomes `lam * x[i] + (1 - lam) * x[perm[i]]`, and its label the same mix of the
    two one-hot labels (`F.one_hot`). torchvision draws lam from a Beta(alpha, alpha) and uses
    `perm = arange(B).roll(1)`; the check compares with `v2.MixUp`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def cutmix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, box: tuple[int, int, int, int], perm: torch.Tensor
):
    """CutMix: paste box `(x1, y1, x2, y2)` of sample perm[i] into sample i; return (x_mixed, y_mixed).

    x1:x2 are columns (width) and y1:y2 rows (height), ends excluded. The labels mix the two one-hot
    labels by the share of pixels each image keeps: `lam = 1 - box area / (H * W)` for sample i's own.
    Do not change x in place. The check compares with `v2.CutMix`.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
