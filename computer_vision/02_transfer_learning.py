# %% [markdown]
# # 02 · Transfer learning: ImageNet features for cats vs dogs
#
# A network trained on ImageNet (1.3 million photos, 1,000 classes) has learned edges, textures, fur,
# eyes and ears. With only a few hundred labelled images of our own, we can borrow all of that instead
# of learning it again. The task: tell cats from dogs, the cat and dog classes of CIFAR-10, with only
# 500 training images, tested on all 2,000 test images of the two classes (or `--image-folder PATH`:
# any folder with one sub-folder per class, such as Kaggle's Cats-vs-Dogs `PetImages/`).
#
# **What you will learn**
# - how to load a pretrained backbone, and why its preprocessing (size, mean, std) travels with it;
# - what the untouched ImageNet classifier already sees in a small CIFAR cat;
# - three ways to use 500 images on the same architecture: training it **from scratch**, **frozen
#   features + a linear head** (features computed once: fast), and **fine-tuning** every layer with a
#   lower learning rate for the backbone than for the head (optimizer parameter groups);
# - how wide the gap is, measured, and what each way costs.

# %%
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import TensorDataset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from dlkit.config import flag
from dlkit.data import ImageData, load_dataset, locate, split
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.metrics import accuracy_of, predict_classes
from dlkit.plots import image_grid
from dlkit.pretrained import load_backbone
from dlkit.train import fit, make_loader

CAT, DOG = 3, 5  # CIFAR-10 class indices
IMAGENET_GROUPS = {"cat": range(281, 294), "dog": range(151, 269)}  # ImageNet ids: cats (big ones too), dogs


@dataclass
class Config(LessonConfig):
    num_train: int = flag(500, help="labelled training images: few, on purpose", min=2)
    num_test: int = flag(2_000, help="test images (2,000: all of CIFAR-10's test cats and dogs)", min=2)
    image_size: int = flag(128, help="CIFAR's 32x32 upsampled: ImageNet's objects are ~100 px wide",
                           min=32, max=512)  # fmt: skip
    batch_size: int = 32
    num_epochs_scratch: int = flag(6, help="epochs of the from-scratch network", min=1, max=200)
    num_epochs_head: int = flag(30, help="epochs of the linear head on precomputed features", min=1, max=1000)
    num_epochs_finetune: int = flag(3, help="epochs of fine-tuning every layer", min=1, max=100)
    lr_scratch: float = flag(2e-3, help="peak learning rate from scratch", above=0, max=1)
    lr_head: float = flag(1e-3, help="peak learning rate of the linear head", above=0, max=1)
    lr_backbone: float = flag(1e-4, help="fine-tuning: the backbone's, ten times below the head's",
                              above=0, max=1)  # fmt: skip
    weight_decay: float = 0.05
    image_folder: str = flag("", help="PATH/<class>/*.jpg instead of CIFAR-10, split at random")


QUICK = {"num_train": 64, "num_test": 128, "image_size": 96, "num_epochs_head": 20}
QUICK |= {"num_epochs_scratch": 1, "num_epochs_finetune": 1}
lesson = Lesson("computer_vision/02_transfer_learning", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 on a recent GPU or a CPU with native bf16, else None

# %% [markdown]
# ## The data: cats and dogs
#
# CIFAR-10 (the JPEG copy when it is on disk, else the official one, downloaded) has 10,000 training
# and 2,000 test images of cats and dogs; we take a stratified 500 of the training images. Quick mode
# never downloads: with no cat or dog on disk it uses synthetic two-class images, and says so.


# %%
def cifar_cats_dogs(name: str, split: str) -> ImageData:
    """CIFAR-10's cats (label 0) and dogs (label 1): x (N, 3, 32, 32) in [0, 1]."""
    data = load_dataset(name, split=split)
    keep = (data.y == CAT) | (data.y == DOG)
    y = (data.y[keep] == DOG).long()  # (N,)
    return ImageData(data.x[keep], y, ["cat", "dog"], f"cats and dogs of {data.source}")


def image_folder(root: Path, num_images: int, size: int, seed: int) -> ImageData:
    """At most ``num_images`` random images of root/<class>/*, resized and centre-cropped to size x size."""
    folder = ImageFolder(str(root))
    to_tensor = v2.Compose([v2.Resize(size), v2.CenterCrop(size), v2.ToImage()])  # -> (3, size, size) uint8
    x, y = [], []
    for i in torch.randperm(len(folder), generator=torch.Generator().manual_seed(seed)).tolist():
        try:
            with Image.open(folder.samples[i][0]) as image:
                x.append(to_tensor(image.convert("RGB")))
        except OSError:  # Kaggle's PetImages holds a few broken files
            continue
        y.append(folder.samples[i][1])
        if len(y) == num_images:
            break
    return ImageData(torch.stack(x).float() / 255, torch.tensor(y), folder.classes, f"{len(y):,} of {root}")


def synthetic_two_class(n: int, seed: int) -> ImageData:
    """A stand-in when no cat or dog is on disk: noisy colour gratings, horizontal (0) or vertical (1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    ramp = torch.linspace(0, 1, 32)
    t = torch.where(y.view(n, 1, 1) == 0, ramp.view(1, 32, 1), ramp.view(1, 1, 32))  # (n, 32, 32)
    frequency, phase = 2 + 4 * torch.rand(n, 1, 1, generator=g), 6 * torch.rand(n, 1, 1, generator=g)
    waves = torch.sin(2 * math.pi * frequency * t + phase).unsqueeze(1)  # (n, 1, 32, 32)
    x = 0.5 + 0.4 * waves * torch.rand(n, 3, 1, 1, generator=g) + 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    return ImageData(x.clamp(0, 1), y, ["horizontal", "vertical"], f"SYNTHETIC gratings ({n}): no cats, dogs")


def load_cats_dogs() -> tuple[str, ImageData, ImageData]:
    """(name, train, test): an image folder, else CIFAR-10, else (quick mode only) synthetic images."""
    n, size = cfg.num_train + cfg.num_test, cfg.image_size
    if cfg.image_folder:
        folder = image_folder(Path(cfg.image_folder).expanduser(), n, size, cfg.seed)
        return "image_folder", *split(folder, cfg.num_train)  # random images: train and test are disjoint
    for name in ("cifar10_jpeg", "cifar10"):
        if locate(name) is not None or (full and name == "cifar10"):  # only full mode may download
            train, test = cifar_cats_dogs(name, "train"), cifar_cats_dogs(name, "test")
            return name, train.subset(cfg.num_train, seed=cfg.seed), test.subset(cfg.num_test, seed=cfg.seed)
    return "synthetic", *split(synthetic_two_class(n, cfg.seed), cfg.num_train)


data_name, train, test = load_cats_dogs()
lesson.uses_data(data_name, f"train: {train.source}; test: {test.source}")
classes = train.classes
print(f"{data_name}: train {tuple(train.x.shape)}, test {tuple(test.x.shape)}, classes {classes}")
lesson.savefig(image_grid(train.x[:16], [classes[i] for i in train.y[:16]]), "samples")

# %% [markdown]
# What to notice: 32x32 pixels is little even for a person; a dog's head is ten pixels wide.
#
# ## A pretrained backbone, and what it already knows
#
# `load_backbone()` returns EfficientNet-Lite0 (4.7 M parameters, 75% top-1 on ImageNet) with its
# ImageNet weights, here from a pip package, so it needs no network. Its classifier is cut off: the
# model maps an image to 1,280 pooled features; the old classifier is kept as `imagenet_head`. The
# weights come with the preprocessing they were trained with: a wrong mean and std silently cost
# accuracy (try ImageNet's usual ones instead of these). We upsample CIFAR images to `image_size`:
# ImageNet's objects are about 100 pixels wide.

# %%
backbone = load_backbone()
lesson.uses_data("weights", backbone.source)
print(f"{backbone.name}: {backbone.num_features} features, preprocessing {backbone.preprocessing}")


def prepare(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) upsampled, normalised as in ImageNet training, channels-last
    (the memory layout fast convolution kernels want: twice as fast on this CPU)."""
    return backbone.prepare(x, cfg.image_size).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def extract_features(model: nn.Module, data: ImageData) -> torch.Tensor:
    """(N, 3, H, W) images -> (N, num_features) features of the frozen backbone, 256 at a time."""
    model.eval().to(device, memory_format=torch.channels_last)
    batches = []
    for (x,) in make_loader(TensorDataset(data.x), 256, shuffle=False):
        with autocast(device, amp_dtype):
            batches.append(model(prepare(x.to(device))).float().cpu())  # (B, num_features)
    return torch.cat(batches)


start = time.perf_counter()
features = {"train": extract_features(backbone.model, train), "test": extract_features(backbone.model, test)}
seconds_features = time.perf_counter() - start
print(f"features {tuple(features['test'].shape)} for the test images; all in {seconds_features:.1f} s")

# %% [markdown]
# Before we train anything: the ImageNet classifier on top of those features names 1,000 classes, 13
# of them cats (tabby, Persian, ..., lion, tiger) and 118 of them dog breeds. Summing the probability
# of each group gives a cat-vs-dog classifier that has seen none of our images ("zero-shot").

# %%
with torch.no_grad():
    imagenet_probs = backbone.imagenet_head.cpu()(features["test"]).softmax(dim=1)  # (N, 1000)
top5 = imagenet_probs.topk(5, dim=1).indices  # (N, 5)
cats_dogs = [c.lower().rstrip("s") for c in classes] == ["cat", "dog"]  # zero-shot needs these classes
if cats_dogs:
    ids = [torch.tensor(group) for group in IMAGENET_GROUPS.values()]  # cat ids, dog ids
    group_probs = torch.stack([imagenet_probs[:, i].sum(dim=1) for i in ids], dim=1)  # (N, 2)
    acc_zero_shot = (group_probs.argmax(dim=1) == test.y).float().mean().item()
    in_top5 = [torch.isin(top5[test.y == c], i).any(1).float().mean().item() for c, i in enumerate(ids)]
    print(f"zero-shot accuracy {acc_zero_shot:.3f}; top 5 holds a cat for {in_top5[0]:.0%} of the cats,")
    print(f"a dog for {in_top5[1]:.0%} of the dogs. The top 5 of a few test images:")
    for i in range(6):
        print(f"  {classes[test.y[i]]}: {', '.join(backbone.categories[j] for j in top5[i].tolist())}")

# %% [markdown]
# What to notice: with no training at all, the ImageNet classes split cats from dogs well above
# chance, blurred 32x32 inputs and all. Dogs are easier: a dog breed is in the top 5 for far more of
# the dogs than a cat is for the cats (ImageNet has 118 dog breeds, 5 house cats).
#
# ## Three ways to train, on the same 500 images
#
# One model class serves all three: it upsamples and normalises the batch, flips half the images
# left-right while training (a cat stays a cat in a mirror), runs a backbone and a linear head.


# %%
class TransferNet(nn.Module):
    """(B, 3, H, W) images in [0, 1] -> (B, num_classes) logits: backbone features, then a linear head."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, freeze_bn: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.freeze_bn = backbone, nn.Linear(num_features, num_classes), freeze_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # a random horizontal flip per image
            x = torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
        return self.head(self.backbone(prepare(x)))  # (B, num_features) -> (B, num_classes)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        # Frozen batch norm keeps ImageNet's statistics: batches of 32 small images would overwrite them.
        for module in self.backbone.modules() if self.freeze_bn else []:
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


def train_model(model: nn.Module, param_groups: list[dict], num_epochs: int, data: TensorDataset) -> float:
    """AdamW + OneCycleLR (each group peaks at its own lr) for ``num_epochs``; returns the seconds taken."""
    seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    loader = make_loader(data, cfg.batch_size, shuffle=True)
    max_lr = [group["lr"] for group in param_groups]  # each group's own peak
    scheduler = OneCycleLR(optimizer, max_lr, total_steps=num_epochs * len(loader), pct_start=0.2)
    start = time.perf_counter()
    model.to(device, memory_format=torch.channels_last)
    kwargs = {"scheduler": scheduler, "scheduler_interval": "batch", "verbose": num_epochs <= 10}
    fit(model, optimizer, loader, loss_fn=F.cross_entropy, num_epochs=num_epochs, device=device, **kwargs)
    return time.perf_counter() - start


accuracy, seconds = {}, {}

# %% [markdown]
# **1. From scratch.** The same EfficientNet-Lite0 with random weights, every layer trained on our
# 500 images, for twice the epochs of fine-tuning below.

# %%
seed_everything(cfg.seed)
scratch = TransferNet(backbone.untrained(), backbone.num_features, len(classes), freeze_bn=False)
groups = [{"params": scratch.parameters(), "lr": cfg.lr_scratch}]
seconds["scratch"] = train_model(scratch, groups, cfg.num_epochs_scratch, train.tensor_dataset())
accuracy["scratch"] = accuracy_of(scratch, test.x, test.y, batch_size=256, amp_dtype=amp_dtype)
print(f"from scratch: test accuracy {accuracy['scratch']:.3f} ({seconds['scratch']:.0f} s)")

# %% [markdown]
# What to notice: the training accuracy climbs, the test accuracy stays near chance: 500 images are
# too few to learn what a cat looks like from pixels (twice the epochs learn the training images by
# heart, and the test accuracy hardly moves: try `--num-epochs-scratch 12`).
#
# **2. Frozen features + a linear head.** The backbone never changes, so its features were computed
# once above; training is logistic regression on 1,280 numbers per image: seconds, even on a CPU.

# %%
seed_everything(cfg.seed)
head = nn.Linear(backbone.num_features, len(classes))
groups, data = [{"params": head.parameters(), "lr": cfg.lr_head}], TensorDataset(features["train"], train.y)
seconds["frozen"] = seconds_features + train_model(head, groups, cfg.num_epochs_head, data)
accuracy["frozen"] = accuracy_of(head, features["test"], test.y, amp_dtype=amp_dtype)
print(f"frozen features + linear head: test accuracy {accuracy['frozen']:.3f} ({seconds['frozen']:.0f} s)")

# %% [markdown]
# **3. Fine-tuning.** Now every layer trains, but not all at the same speed: an optimizer takes
# *parameter groups*, each with its own `lr`. The head gets `lr_head`, the backbone ten times less, so
# that a few hundred images nudge the ImageNet features rather than overwrite them. Two more guards,
# the recipe of Keras's transfer-learning guide: the head starts from the one trained in step 2 (a
# random head would send large, random gradients into the backbone at the first steps; Kumar et al.,
# 2022, call it LP-FT), and batch norm keeps ImageNet's statistics.

# %%
finetuned = TransferNet(copy.deepcopy(backbone.model), backbone.num_features, len(classes), freeze_bn=True)
finetuned.head.load_state_dict(head.state_dict())
groups = [
    {"params": finetuned.backbone.parameters(), "lr": cfg.lr_backbone},
    {"params": finetuned.head.parameters(), "lr": cfg.lr_head},
]
data = train.tensor_dataset()
seconds["finetune"] = seconds["frozen"] + train_model(finetuned, groups, cfg.num_epochs_finetune, data)
accuracy["finetune"] = accuracy_of(finetuned, test.x, test.y, batch_size=256, amp_dtype=amp_dtype)
print(f"fine-tuned: test accuracy {accuracy['finetune']:.3f} ({seconds['finetune']:.0f} s with step 2)")

# %% [markdown]
# What to notice: the frozen backbone with a trained linear head is far above scratch. Fine-tuning
# adds little on 500 images (in full mode within a few points of the frozen features, either way) and
# costs several times more: a forward and a backward pass per image per epoch, where the frozen model
# needed one forward pass in all.
#
# ## What the models say, and the accuracies side by side


# %%
show = torch.cat([(test.y == c).nonzero()[:8, 0] for c in range(len(classes))])[:16]  # 8 of each class
x_show, y_show, mark = test.x[show], test.y[show].tolist(), ["no", "ok"]
tuned, from_scratch = (predict_classes(m, x_show, amp_dtype=amp_dtype).tolist() for m in (finetuned, scratch))
predictions = zip(y_show, tuned, from_scratch, strict=True)
captions = [f"{classes[y]}\ntuned {mark[f == y]}, scratch {mark[s == y]}" for y, f, s in predictions]
fig = image_grid(x_show, captions, ncols=8)
fig.set_size_inches(fig.get_size_inches() * [1.0, 1.25])  # room for two-line captions
fig.tight_layout()
lesson.savefig(fig, "example_predictions")

bars = dict(zip(["from scratch", "frozen + linear", "fine-tuned"], accuracy.values(), strict=True))
if cats_dogs:
    bars["ImageNet head,\nno training"] = acc_zero_shot
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.bar(list(bars), list(bars.values()), color=["tab:red", "tab:blue", "tab:green", "0.6"][: len(bars)])
ax.bar_label(ax.containers[0], fmt="%.3f")
ax.axhline(1 / len(classes), color="black", linestyle=":", label="chance")
ax.set(ylim=(0, 1), ylabel="test accuracy", title=f"{len(train):,} training, {len(test):,} test images")
ax.legend(loc="lower right")
lesson.savefig(fig, "accuracy_bars")

# %% [markdown]
# ## What you measured
#
# The accuracy of each way and what it cost (seconds on this machine, printed, never checked: they
# depend on the hardware and what else runs). In full mode the pretrained network wins by far on the
# same 500 images, and the cheapest way, frozen features, gets nearly all of it. Try `--num-train
# 5000` (seconds per part on a GPU) to see whether fine-tuning pulls ahead with more data, or
# `--image-folder PetImages --image-size 224` with Kaggle's Cats-vs-Dogs photos.

# %%
for way in accuracy:
    print(f"{way:<10} test accuracy {accuracy[way]:.3f}  ({seconds[way]:.0f} s)")
chance = max(test.y.bincount()).item() / len(test)  # the majority class's share: what guessing scores
lesson.record("acc_frozen", accuracy["frozen"], min=0.75 if full else 0.58, chance=chance)
lesson.record("acc_finetune", accuracy["finetune"], min=0.75 if full else 0.55, chance=chance)
lesson.record("frozen_minus_scratch", accuracy["frozen"] - accuracy["scratch"], min=0.15 if full else 0.05)
if full:  # one quick epoch of fine-tuning barely moves the weights: the comparison is printed only
    lesson.record("finetune_minus_frozen", accuracy["finetune"] - accuracy["frozen"], min=-0.04, max=0.06)
if cats_dogs:
    lesson.record("acc_zero_shot", acc_zero_shot, min=0.6 if full else 0.55, chance=chance)
if cats_dogs and full:  # a random ranking of ImageNet's 1000 classes puts a cat in the top 5 for 6% of
    # the images, and a dog for 47% (118 breeds); quick mode has too few images to tell such shares apart
    lesson.record("cats_with_a_cat_in_top5", in_top5[0], min=0.3, chance=1 - (1 - 13 / 1000) ** 5)
    lesson.record("dogs_with_a_dog_in_top5", in_top5[1], min=0.6, chance=1 - (1 - 118 / 1000) ** 5)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check computer_vision/02` in a terminal). The
# checks run your code on small models shaped like torchvision's and take a real optimizer step.

# %% tags=["exercise"]
import torch
from torch import nn


def freeze_all_but_head(model: nn.Module, head: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Freeze every parameter of `model` except those of `head` (a submodule); return AdamW(lr) for the head.

    Set `requires_grad` (BatchNorm's weight and bias count too), and give the optimizer the head's
    parameters only. The check takes one step: the backbone must not move, the head must.
    """
    raise NotImplementedError


# %% tags=["exercise"]
from torch import nn


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give a torchvision-style classifier a new last layer for `num_classes` classes; return the model.

    `model.classifier` is an nn.Sequential whose last layer is an nn.Linear (as in MobileNetV3 or
    EfficientNet). Replace that layer by a fresh nn.Linear with the same `in_features`; keep the other
    layers and every pretrained weight.
    """
    raise NotImplementedError


# %% tags=["exercise"]
from torch import nn


def layerwise_lr_groups(blocks: nn.ModuleList, head: nn.Module, lr: float, decay: float) -> list[dict]:
    """Optimizer parameter groups with layer-wise lr decay: [{"params": [...], "lr": ...}, ...].

    The head learns at `lr`; the block just below it at `lr * decay`, the one below that at
    `lr * decay**2`, down to the first block (`blocks[0]`) at `lr * decay**len(blocks)`: the earlier
    a layer, the more general its features and the less it should move (the lesson's two groups,
    refined). Every parameter in exactly one group.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
