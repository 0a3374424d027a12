# %% [markdown]
# # Computer vision 01 · Image classification: convolution, pooling and a CNN on Fashion-MNIST
#
# An MLP sees a 28x28 image as 784 unrelated numbers: move a shirt by one pixel and, to the MLP, every
# input has changed. A convolution instead slides one small filter over the image, so the same few
# weights look at every position (weight sharing) and each output depends on a small neighbourhood
# only (locality). We write convolution and max pooling by hand, check them against PyTorch, work
# out the sizes and receptive fields they produce, then train a CNN and look at what it gets wrong.
#
# **What you will learn**
# - convolution as "cut out every k x k window, multiply it with the filter, add up", written with
#   `Tensor.unfold`, and max pooling as the same windows reduced with `max`; both equal to PyTorch's;
# - the output size `(H + 2p - k) // s + 1`, and the receptive field of a stack of layers, computed
#   with a formula and measured with the gradient of one output pixel;
# - why a conv layer has hundreds of weights where a dense layer with the same output has millions;
# - a BatchNorm CNN (`dlkit.nets.make_cnn`) trained with `dlkit.train.fit` (bf16 autocast,
#   channels_last on a GPU, OneCycle, batched augmentation on the device) against logistic regression;
# - reading a confusion matrix and the images the model gets wrong.

# %%
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from dlkit.augment import flip_lr, random_translate
from dlkit.config import flag
from dlkit.data import Standardize, choose_dataset, load_train_test, split
from dlkit.lesson import Lesson, LessonConfig, exactly
from dlkit.metrics import confusion_matrix, predict_classes
from dlkit.nets import make_cnn
from dlkit.plots import image_grid, plot_confusion_matrix, plot_history
from dlkit.train import History, TensorBatches, fit


@dataclass
class Config(LessonConfig):
    num_train: int = flag(0, help="training images to use, num_val of them held out (0: all 60,000)", min=0)
    num_test: int = flag(0, help="test images to use (0: all 10,000)", min=0)
    num_val: int = flag(5_000, help="held out of the training images, to watch training", min=1)
    width: int = flag(
        32, help="channels of the first conv block; the next two have 2x and 4x", min=1, max=512
    )
    dropout_p: float = flag(0.2, help="dropout before the CNN's linear layer", min=0, max=0.9)
    batch_size: int = 128
    num_epochs: int = flag(8, help="epochs of the CNN", min=1, max=200)
    lr: float = flag(3e-3, help="the peak of the OneCycle schedule (AdamW)", above=0, max=1)
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    max_shift: int = flag(
        0, help="augmentation: shift each training image by up to this many pixels", min=0, max=8
    )
    baseline_epochs: int = flag(4, help="epochs of the logistic-regression baseline", min=1, max=200)


# Quick mode: 2,000 images, and smaller batches so that its 3 epochs still take enough steps.
quick = {"num_train": 2000, "num_test": 500, "num_val": 250, "batch_size": 32, "num_epochs": 3}
lesson = Lesson("computer_vision/01_image_classification", Config, quick=quick)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)  # quick: never the network
all_train, test_data = load_train_test(name, num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
val_data, train_data = split(all_train, cfg.num_val, seed=cfg.seed)  # to watch training: no test set
lesson.uses_data(name, f"train and validation: {all_train.source}; test: {test_data.source}")
classes, num_classes = all_train.classes, len(all_train.classes)
in_channels, size = all_train.x.shape[1], all_train.x.shape[-1]  # (N, C, H, W), square images

# %% [markdown]
# ## Convolution and max pooling, by hand
#
# Padding adds `p` rows and columns of zeros around the image; then a window of `k x k` pixels moves
# `s` (the stride) pixels at a time. `Tensor.unfold(dim, k, s)` lists those windows without copying
# anything, as a view. A convolution multiplies every window with each filter and sums over the
# window and the input channels; max pooling keeps the largest value of each window (it pads with
# `-inf`, so padding never wins).


# %%
def windows(x: torch.Tensor, k: int, stride: int, padding: int, fill: float = 0.0) -> torch.Tensor:
    """Every k x k window of x (B, C, H, W): a (B, C, H_out, W_out, k, k) view of the padded input."""
    x = F.pad(x, (padding, padding, padding, padding), value=fill)  # (B, C, H + 2p, W + 2p)
    return x.unfold(2, k, stride).unfold(3, k, stride)


def conv2d_by_hand(x, weight, bias=None, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """F.conv2d for x (B, C_in, H, W) and square filters weight (C_out, C_in, k, k)."""
    patches = windows(x, weight.shape[-1], stride, padding)  # (B, C_in, H_out, W_out, k, k)
    out = torch.einsum("bchwij,ocij->bohw", patches, weight)  # (B, C_out, H_out, W_out)
    return out if bias is None else out + bias[:, None, None]


def max_pool2d_by_hand(x: torch.Tensor, k: int, stride: int | None = None, padding: int = 0) -> torch.Tensor:
    """F.max_pool2d: the largest value of every k x k window; the stride defaults to k (no overlap)."""
    return windows(x, k, stride or k, padding, fill=-math.inf).amax(dim=(-2, -1))  # (B, C, H_out, W_out)


def output_size(size: int, k: int, stride: int = 1, padding: int = 0) -> int:
    """How many positions a k-wide window takes in size + 2 * padding pixels, moving stride at a time."""
    return (size + 2 * padding - k) // stride + 1


# (kernel, stride, padding) settings to check; max pooling allows padding up to k // 2.
CONV_SETTINGS = [(3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2), (1, 1, 0), (4, 3, 1), (7, 3, 3)]
POOL_SETTINGS = [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (3, 3, 0)]

# %%
gen = torch.Generator().manual_seed(cfg.seed)
x = torch.randn(2, 3, 11, 13, dtype=torch.float64, generator=gen)  # (B, C, H, W): H != W catches mix-ups
conv_diff = pool_diff = 0.0
for k, s, p in CONV_SETTINGS:
    weight = torch.randn(4, 3, k, k, dtype=torch.float64, generator=gen)  # (C_out, C_in, k, k)
    bias = torch.randn(4, dtype=torch.float64, generator=gen)
    ours, theirs = conv2d_by_hand(x, weight, bias, s, p), F.conv2d(x, weight, bias, stride=s, padding=p)
    conv_diff = max(conv_diff, (ours - theirs).abs().max().item())
for k, s, p in POOL_SETTINGS:
    ours, theirs = max_pool2d_by_hand(x, k, s, p), F.max_pool2d(x, k, stride=s, padding=p)
    pool_diff = max(pool_diff, (ours - theirs).abs().max().item())
# One output pixel written out: filter 0 on the top-left 3x3 window, summed over the 3 input channels.
weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=gen)
one_pixel = (x[0, :, 0:3, 0:3] * weight[0]).sum()
print(f"one pixel: written out {one_pixel:.6f}, F.conv2d {F.conv2d(x, weight)[0, 0, 0, 0]:.6f}")
lesson.record("conv_max_abs_diff", conv_diff, max=1e-6)
lesson.record("pool_max_abs_diff", pool_diff, max=1e-6)

# The output-size formula against the shapes PyTorch produces, for conv and pool layers alike.
layers = [(nn.Conv2d(1, 1, *c), c) for c in CONV_SETTINGS] + [(nn.MaxPool2d(*c), c) for c in POOL_SETTINGS]
checks = [(layer(torch.zeros(1, 1, n, n)).shape[-2:], (output_size(n, *c),) * 2) for layer, c in layers
          for n in (28, 11, 7)]  # fmt: skip
mismatches, checked = sum(actual != formula for actual, formula in checks), len(checks)
lesson.record("shape_checks", checked, min=3 * (len(CONV_SETTINGS) + len(POOL_SETTINGS)))
lesson.record("shape_mismatches", mismatches, max=0)

# %% [markdown]
# What to notice: in float64 our convolution and pooling agree with PyTorch's to rounding error, for
# every stride and padding. The formula has a floor in it: a window that would hang over the edge is
# dropped, so `(28 - 2) // 2 + 1 = 14` but `(7 - 2) // 2 + 1 = 3`. A 3x3 conv with padding 1 and
# stride 1 keeps the size; a 2x2 pool with stride 2 halves it.
#
# A filter is a pattern detector. The classic Sobel filters respond to vertical and horizontal edges:
# applied to a training image, they light up its outlines; a max pool keeps the strongest response of
# each 2x2 window at a quarter of the pixels.

# %%
SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # left minus right
image = train_data.x[:1, :1]  # (1, 1, H, W), the first channel of a training image
edges = conv2d_by_hand(image, torch.stack([SOBEL_X, SOBEL_X.T])[:, None], padding=1)  # (1, 2, H, W)
panels = {"image": image, "vertical edges": edges[:, :1], "horizontal edges": edges[:, 1:]}
panels["|vertical|, max-pooled"] = max_pool2d_by_hand(edges[:, :1].abs(), 2)  # (1, 1, H/2, W/2)
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for ax, (title, panel) in zip(axes, panels.items(), strict=True):
    signed, lim = title.endswith("edges"), panel.abs().max().item()  # red > 0, blue < 0, white 0
    ax.imshow(panel[0, 0], cmap="RdBu_r" if signed else "gray", vmin=-lim if signed else 0, vmax=lim)
    ax.set(title=f"{title}\n{tuple(panel.shape[-2:])}", xticks=[], yticks=[])
lesson.savefig(fig, "edge_filters")

# %% [markdown]
# ## The CNN, and how far each of its outputs can see
#
# `dlkit.nets.make_cnn` stacks three blocks of conv 3x3 (padding 1, no bias: the BatchNorm after it
# has its own shift), BatchNorm, ReLU and a 2x2 max pool: the maps shrink 28 -> 14 -> 7 -> 3 while the
# channels grow 32 -> 64 -> 128, then one linear layer reads the 128 x 3 x 3 features.
#
# The **receptive field** of a pixel of a feature map is the input region it depends on. Each layer
# widens it by `(k - 1) * jump`, where `jump`, the product of the strides before it, is how far apart
# neighbouring pixels of that layer are in the input. To measure it, we backpropagate from one pixel of
# the last map and see which input pixels get a nonzero gradient. A max pool sends the gradient to the
# winner of each window only, and a ReLU stops it where it is off, so we measure on a linear twin with
# the same geometry: one channel, positive weights, average pools of the same sizes.


# %%
def receptive_field(model: nn.Module) -> int:
    """The receptive field of model's conv/pool stack, from each layer's kernel size and stride."""
    field, jump = 1, 1
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d | nn.MaxPool2d):
            k, s = (v if isinstance(v, int) else v[0] for v in (layer.kernel_size, layer.stride))
            field, jump = field + (k - 1) * jump, jump * s  # square kernels and strides
    return field


def linear_twin(model: nn.Module) -> nn.Sequential:
    """model's conv and pool layers with one channel, positive weights, and average pools for max pools."""
    layers = []
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, bias=False)
            nn.init.uniform_(conv.weight, 0.1, 1.0)  # positive, so no sum cancels out to zero
            layers.append(conv)
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
    return nn.Sequential(*layers).double()


def gradient_of_center_pixel(model: nn.Module, side: int = 64) -> torch.Tensor:
    """|d output[centre] / d input| for a (1, 1, side, side) input: nonzero where the pixel looks."""
    x = torch.rand(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    out = model(x)  # (1, 1, h, w)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    return x.grad[0, 0].abs()  # (side, side)


def nonzero_extent(grad: torch.Tensor) -> tuple[int, int]:
    rows, cols = grad.sum(1).nonzero(), grad.sum(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


# %%
side = output_size(output_size(output_size(size, 2, 2), 2, 2), 2, 2)  # each pool halves (floor)
widths = (cfg.width, 2 * cfg.width, 4 * cfg.width)  # three conv blocks, then a linear layer
cnn = partial(make_cnn, in_channels, num_classes, widths, image_size=size, dropout=cfg.dropout_p)
torch.manual_seed(cfg.seed)
model = cnn()  # (B, C, H, W) -> (B, num_classes)
grad = gradient_of_center_pixel(linear_twin(model))
field, (height, width) = receptive_field(model), nonzero_extent(grad)
print(f"receptive field: formula {field}, measured {height} x {width}; maps {size} -> {side} px a side")
lesson.record("receptive_field", field, **exactly(22))
lesson.record("receptive_field_gap", abs(height - field) + abs(width - field), max=0)
four_convs = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(4)])  # no pooling
four_measured = nonzero_extent(gradient_of_center_pixel(linear_twin(four_convs)))
print(f"four 3x3 convs: receptive field {receptive_field(four_convs)}, measured {four_measured}")
lesson.record("receptive_field_four_convs", receptive_field(four_convs), **exactly(9))
fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(grad, cmap="magma")
ax.set_title(f"|gradient| of one output pixel: nonzero on {height} x {width}", fontsize=9)
lesson.savefig(fig, "receptive_field")

# %% [markdown]
# What to notice: the measured region is exactly the formula's square. Without pooling, each 3x3 conv
# adds 2 pixels; after a stride-2 pool every later layer adds twice as much, and after three pools
# eight times as much. That is why CNNs pool (or stride): with few layers and few weights, each pixel
# of the last 3x3 map sees 22 x 22 of the 28 x 28 input pixels (the linear layer on top sees all).
# Inside the square the gradient is strongest in the middle, which reaches the output along many more
# paths than the border does: the *effective* receptive field is smaller than the formula's. And
# every position shares the same weights; count them.


# %%
def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# A dense layer producing the same 32 x H x W output from the same image, built on the "meta" device:
# PyTorch records the shapes without allocating its memory.
conv = nn.Conv2d(in_channels, 32, 3, padding=1)
dense = nn.Linear(in_channels * size * size, 32 * size * size, device="meta")
conv_params, dense_params = num_params(conv), num_params(dense)
print(f"conv 3x3, {in_channels} -> 32 channels: {conv_params:,} parameters (32 * ({in_channels} * 9 + 1))")
print(f"dense layer, same input and output: {dense_params:,} parameters ({dense_params / conv_params:,.0f}x)")
print(f"the whole CNN: {num_params(model):,} parameters")
lesson.record("conv_params", conv_params, **exactly(32 * (in_channels * 9 + 1)))  # weights + biases
lesson.record("dense_params", dense_params, **exactly((in_channels * size * size + 1) * 32 * size * size))
lesson.record("cnn_params", num_params(model), max=200_000)

# %% [markdown]
# ## Training: data on the device, batched augmentation, bf16, OneCycle
#
# Fashion-MNIST fits in memory many times over, so, as in the fastest CIFAR-10 scripts, the whole set
# moves to the device once, and a batch is `X[idx]`: no per-image `Dataset.__getitem__`, no collation
# (`dlkit.train.TensorBatches` does this, in a new order every epoch, and `fit` takes it for a loader).
# The images are standardised with the mean and std of the training part (`dlkit.data.Standardize`).
# Augmentation is batched too (`dlkit.augment`, lesson 03): half of the images are mirrored left-right
# (clothes look the same mirrored; digits do not, so they are not flipped), and with `--max-shift m`
# each is also moved by up to m pixels, the border filled by reflection: one gather for the batch.

# %%
standardize = Standardize.fit(train_data.x)  # statistics of the training part only
X_train, y_train = standardize(train_data.x).to(device), train_data.y.to(device)
X_val, y_val = standardize(val_data.x).to(device), val_data.y.to(device)
X_test, y_test = standardize(test_data.x).to(device), test_data.y
flip_p, max_shift = 0.5 if name == "fashion_mnist" else 0.0, min(cfg.max_shift, size // 8)


def augment(X: torch.Tensor) -> torch.Tensor:
    """A batch (B, C, H, W) -> the same images, some mirrored, each moved by up to max_shift pixels."""
    return random_translate(flip_lr(X, flip_p), max_shift)


val_batches = TensorBatches(X_val, y_val, 1000)
shown = standardize.inverse(augment(X_train[:16]))
lesson.savefig(image_grid(shown, [classes[i] for i in y_train[:16].tolist()]), "augmented_samples")
print(f"train {len(y_train):,}, val {len(y_val):,}, test {len(y_test):,}; flip {flip_p}, shift {max_shift}")

# %% [markdown]
# What to notice: the augmented images are the same clothes, some mirrored; the labels do not change.
# Augmentation makes the training set look larger, which slows memorising down, but it also makes
# each epoch harder to learn from: in runs this short, shifts on top of the flips cost more than they
# give, so they are off by default here (lesson 03 measures augmentation properly).
#
# Both models are trained by `dlkit.train.fit` with one recipe: AdamW, a OneCycle schedule stepped
# every batch (warm up to `lr`, then anneal to almost 0), label smoothing, and `amp=None`, which
# turns bf16 autocast on where it pays (CUDA GPUs, and CPUs with native bf16).


# %%
def train(model: nn.Module, num_epochs: int, run_name: str, augment=None) -> History:
    if device.type == "cuda":  # (N, H, W, C) in memory: the layout GPU convolutions are fastest in
        model = model.to(memory_format=torch.channels_last)  # the conv outputs follow the weights' layout
    batches = TensorBatches(X_train, y_train, cfg.batch_size, shuffle=True, augment=augment)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=num_epochs * len(batches))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    return fit(model, optimizer, batches, val_batches, loss_fn=loss_fn, num_epochs=num_epochs,
               device=device, scheduler=scheduler, scheduler_interval="batch", amp=None,
               run_dir=lesson.run_dir / run_name)  # fmt: skip


print("logistic regression: one linear layer on the pixels")
torch.manual_seed(cfg.seed)
baseline = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * size * size, num_classes))
train(baseline, cfg.baseline_epochs, "logistic_regression")
baseline_acc = (predict_classes(baseline, X_test) == y_test).float().mean().item()

print("CNN")
torch.manual_seed(cfg.seed)
model = cnn()
history = train(model, cfg.num_epochs, "cnn", augment=augment)
print(f"{history.rows[-1]['seconds']:.0f} s of training (the last row's clock) for {cfg.num_epochs} epochs")
lesson.savefig(plot_history(history.rows, title="CNN"), "cnn_history")
preds = predict_classes(model, X_test)
cm = confusion_matrix(preds, test_data.y, num_classes)  # (num_classes, num_classes), rows = true class
test_acc = (cm.diag().sum() / cm.sum()).item()
weights = num_params(model) / num_params(baseline)
print(f"test accuracy: logistic regression {baseline_acc:.4f}, CNN {test_acc:.4f} with {weights:.0f}x the "
      f"weights and {(1 - test_acc) / (1 - baseline_acc):.2f}x the mistakes")  # fmt: skip
chance = 1 / num_classes
lesson.record("baseline_acc", baseline_acc, min=0.80 if full else 0.65, chance=chance)
lesson.record("test_acc", test_acc, min=0.92 if full else 0.70, chance=chance)
if full:  # quick mode's 3 short epochs are too few for the CNN to pull ahead reliably: printed only
    lesson.record("cnn_gain_over_baseline", test_acc - baseline_acc, min=0.05)

# %% [markdown]
# What to notice: the logistic regression, one weight per pixel and class, levels off early; the CNN,
# with many more weights but each shared across positions, makes far fewer mistakes in full mode (the
# line above says how many). Its validation accuracy climbs while the learning rate is high and
# settles as OneCycle anneals it to almost zero.
#
# ## What the CNN gets wrong
#
# Row i of the confusion matrix counts the test images of true class i by the class predicted; the
# diagonal holds the correct ones, and normalised by row it is each class's recall.

# %%
lesson.savefig(plot_confusion_matrix(cm, classes, title=f"CNN, test accuracy {test_acc:.3f}"), "confusion")
recall = cm.diag() / cm.sum(1).clamp(min=1)
errors = cm - torch.diag(cm.diag())  # (num_classes, num_classes), off-diagonal counts only
true_i, pred_j = divmod(errors.argmax().item(), num_classes)
print(f"hardest class: {classes[recall.argmin()]} (recall {recall.min():.3f}); most frequent mistake: "
      f"{classes[true_i]} taken for {classes[pred_j]} ({errors.max()} times)")  # fmt: skip
if full:  # in quick mode a class with few test images makes this a lottery: printed only
    lesson.record("worst_class_recall", recall.min(), min=0.6, chance=chance)

wrong = (preds != test_data.y).nonzero().squeeze(1)[:24]
pairs = zip(test_data.y[wrong].tolist(), preds[wrong].tolist(), strict=True)
labels = [f"{classes[t]}\n-> {classes[p]}" for t, p in pairs]  # true -> predicted
lesson.savefig(image_grid(test_data.x[wrong], labels), "misclassified")

# %% [markdown]
# What to notice: on Fashion-MNIST the mistakes sit in one corner of the matrix: shirts, T-shirts,
# pullovers and coats, all tops of similar outline, which even people confuse at 28x28. Footwear and
# trousers are rarely wrong. Several "misclassified" images are ambiguous or arguably mislabelled:
# the last percent of accuracy is partly noise in the labels.
#
# ## What you measured
# Our unfold-based convolution and max pooling equal PyTorch's (float64, several strides and
# paddings) and the output-size formula every shape; the receptive fields (22 pixels for the CNN, 9
# for four 3x3 convs) by formula and by gradient; the parameters of a conv and of a dense layer; the
# CNN against logistic regression on the test set (at least 92% in full mode), and its hardest class.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check computer_vision/01` in a terminal). The
# checks compare your code with `nn.Conv2d`, `F.conv2d` and `nn.BatchNorm2d` on small inputs.


# %% tags=["exercise"]
def conv_output_shape(size: tuple[int, int], kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """Return (H_out, W_out) of `nn.Conv2d(..., kernel_size, stride, padding, dilation)` on a (H, W) input.

    Each of kernel_size, stride, padding, dilation is an int or a (height, width) pair. Extend the
    lesson's `output_size` with dilation: a kernel of k taps, `dilation` pixels apart, spans
    `dilation * (k - 1) + 1` pixels. The check compares it with nn.Conv2d's output shapes.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
import torch.nn.functional as F


def conv2d_im2col(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1, padding: int = 0
) -> torch.Tensor:
    """F.conv2d for x (B, C_in, H, W) and weight (C_out, C_in, kh, kw) as one matrix product ("im2col").

    `F.unfold(x, (kh, kw), padding=padding, stride=stride)` gives every window as a column,
    (B, C_in * kh * kw, L) with L = H_out * W_out; flatten the weight to (C_out, C_in * kh * kw) in the
    same order, multiply, add the bias, and reshape to (B, C_out, H_out, W_out). Kernels may be
    non-square and images non-square. The check compares it with F.conv2d.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def batch_norm2d_train(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    momentum: float = 0.1,
    eps: float = 1e-5,
):
    """nn.BatchNorm2d's train-mode forward for x (B, C, H, W): return (y, new_running_mean, new_running_var).

    Per channel, the mean and the biased variance over batch, height and width normalise x:
    `y = (x - mean) / sqrt(var + eps) * weight + bias` (weight, bias, running stats: shape (C,)). The
    running averages move by `new = (1 - momentum) * old + momentum * batch_value`, and the variance
    they store is the *unbiased* one (times n / (n - 1), n = B * H * W). Do not change the inputs.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
