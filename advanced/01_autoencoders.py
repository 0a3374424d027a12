# %% [markdown]
# # Advanced 01 · Autoencoders: compression, denoising and anomaly detection
#
# An autoencoder learns to copy its input through a narrow layer, the *code*: an encoder squeezes a
# 784-pixel image into a few numbers, a decoder rebuilds the image from them. No labels are needed,
# the image is its own target. What it learns to keep tells us what matters in the data, what it
# cannot rebuild tells us what is unusual.
#
# **What you will learn**
# - an MLP autoencoder and a convolutional one on Fashion-MNIST, trained with `dlkit.train.fit`
#   (the target is the input), against PCA, the best *linear* code;
# - how the reconstruction error falls as the code grows, and what a 2-D code of every image looks like;
# - a denoising autoencoder (Gaussian and masking noise) against non-learned denoisers, in PSNR;
# - anomaly detection by reconstruction error, trained on normal data only, against scikit-learn's
#   IsolationForest on the same splits of real anomaly sets, scored with ROC-AUC and average precision.

# %%
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from dlkit.anomaly import ColumnScaler, detection_scores, isolation_forest_scores, normal_only_split
from dlkit.config import flag
from dlkit.data import choose_dataset, load_dataset, load_train_test, split
from dlkit.device import seed_everything
from dlkit.lesson import Lesson, LessonConfig
from dlkit.plots import image_grid
from dlkit.train import TensorBatches, fit

ANOMALY_SETS = ("odds_cardio", "odds_mnist", "adbench_thyroid", "adbench_annthyroid", "adbench_mammography")


@dataclass
class Config(LessonConfig):
    num_train: int = flag(0, help="training images, a tenth held out for validation (0: all 60,000)", min=0)
    num_test: int = flag(0, help="test images (0: all 10,000)", min=0)
    code_size: int = flag(16, help="code size of the MLP and conv autoencoders", min=1, max=784)
    code_sizes: tuple[int, ...] = flag((2, 4, 8, 16, 32, 64), help="code sizes of the bottleneck sweep")
    num_epochs: int = flag(6, help="epochs of each image autoencoder", min=1, max=200)
    sweep_epochs: int = flag(3, help="epochs of each autoencoder of the sweep", min=1, max=200)
    lr: float = flag(2e-3, help="Adam's learning rate", above=0, max=1)
    batch_size: int = 128
    noise_std: float = flag(0.3, help="std of the Gaussian noise (pixels in [0, 1], clipped)", min=0, max=1)
    mask_p: float = flag(0.5, help="share of pixels the masking noise sets to 0", min=0, max=0.95)
    anomaly_epochs: int = flag(100, help="at most this many epochs per tabular autoencoder", min=1)
    num_seeds: int = flag(3, help="seeds per anomaly set (the mean is reported)", min=1, max=10)
    one_class_epochs: int = flag(10, help="epochs of each one-class Fashion-MNIST autoencoder", min=1)
    num_one_class: int = flag(10, help="classes taken in turn as 'normal' (one-class-vs-rest)", min=1, max=10)


quick = {"num_train": 3000, "num_test": 1000, "num_epochs": 4, "sweep_epochs": 3, "code_sizes": (2, 32),
         "anomaly_epochs": 30, "num_seeds": 1, "one_class_epochs": 5, "num_one_class": 2}  # fmt: skip
lesson = Lesson("advanced/01_autoencoders", Config, quick=quick)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
print("data:", "Fashion-MNIST (28x28)" if name == "fashion_mnist" else "scikit-learn digits (8x8)")
train_data, test_data = load_train_test(name, num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
val_data, fit_data = split(train_data, len(train_data) // 10, seed=cfg.seed)
lesson.uses_data("images", train_data.source)
x_fit, x_val, x_test = fit_data.x, val_data.x, test_data.x  # (N, 1, H, W) in [0, 1]
side, num_pixels = x_fit.shape[-1], x_fit[0].numel()

# %% [markdown]
# ## An MLP autoencoder, and PCA as the yardstick
#
# The encoder maps the flattened image to `code_size` numbers, the decoder maps them back, a sigmoid
# keeps pixels in [0, 1]. `fit` trains it like any model: the batches are `(x, x)`, the loss is the
# mean squared error between image and reconstruction. PCA is the best any *linear* code of the same
# size can do (it keeps the directions of largest variance), so the autoencoder must beat it to be
# worth its non-linearity.


# %%
class MLPAutoencoder(nn.Module):
    def __init__(self, num_inputs: int, code_size: int, hidden: int = 256, sigmoid: bool = True) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, hidden), nn.ReLU(),
                                     nn.Linear(hidden, code_size))  # fmt: skip
        self.decoder = nn.Sequential(nn.Linear(code_size, hidden), nn.ReLU(), nn.Linear(hidden, num_inputs),
                                     nn.Sigmoid() if sigmoid else nn.Identity())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view_as(x)  # (B, ...) -> (B, code) -> (B, ...)


def train_ae(model, x, x_val, num_epochs, augment=None, patience=None, run=None):
    """Fit model(x) ~ x (or model(augment(x)) ~ x: denoising), validating on x_val; returns the model."""
    batches = TensorBatches(x, x, cfg.batch_size, shuffle=True, augment=augment)
    val = TensorBatches(x_val, x_val, 1000, augment=augment)
    fit(model, torch.optim.Adam(model.parameters(), lr=cfg.lr), batches, val, loss_fn=F.mse_loss,
        num_epochs=num_epochs, device=device, early_stopping_patience=patience,
        run_dir=None if run is None else lesson.run_dir / run, verbose=run is not None)  # fmt: skip
    return model.eval()


@torch.no_grad()
def errors(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The mean squared error of each example's reconstruction (N,)."""
    out = torch.cat([model(b.to(device)).float().cpu() for b in x.split(1000)])
    return (out - x).flatten(1).pow(2).mean(1)


def pca_errors(x_train: torch.Tensor, x: torch.Tensor, k: int, basis: torch.Tensor) -> torch.Tensor:
    """Per-image MSE of x rebuilt from its first k principal components (of x_train)."""
    mean = x_train.flatten(1).mean(0)
    z = (x.flatten(1) - mean) @ basis[:k].T  # (N, k): the PCA code
    return (z @ basis[:k] + mean - x.flatten(1)).pow(2).mean(1)


basis = torch.linalg.svd(x_fit.flatten(1) - x_fit.flatten(1).mean(0), full_matrices=False).Vh  # (784, 784)
seed_everything(cfg.seed)
mlp = train_ae(MLPAutoencoder(num_pixels, cfg.code_size).to(device), x_fit, x_val, cfg.num_epochs, run="mlp")
mlp_mse, pca_mse = errors(mlp, x_test).mean(), pca_errors(x_fit, x_test, cfg.code_size, basis).mean()
print(f"code {cfg.code_size}: MLP autoencoder test MSE {mlp_mse:.4f}, PCA {pca_mse:.4f}")

# %% [markdown]
# ## A convolutional autoencoder
#
# Two stride-2 convolutions shrink the image to a quarter of its side, a linear layer makes the code;
# the decoder mirrors it with transposed convolutions, which double the side (28 -> 14 -> 7 and
# back, or 8 -> 4 -> 2 for digits). The same code size, far fewer weights: the filters are shared
# across positions.


# %%
class ConvAutoencoder(nn.Module):
    def __init__(self, side: int, code_size: int, width: int = 16) -> None:
        super().__init__()
        s, w = side // 4, width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),  # (B, 2w, s, s)
            nn.Flatten(), nn.Linear(2 * w * s * s, code_size))  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(code_size, 2 * w * s * s), nn.ReLU(), nn.Unflatten(1, (2 * w, s, s)),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),  # (B, w, 2s, 2s)
            nn.ConvTranspose2d(w, 1, 4, 2, 1), nn.Sigmoid())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


seed_everything(cfg.seed)
conv = train_ae(ConvAutoencoder(side, cfg.code_size).to(device), x_fit, x_val, cfg.num_epochs, run="conv")
conv_mse = errors(conv, x_test).mean()
count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
print(f"conv autoencoder test MSE {conv_mse:.4f} ({count(conv):,} weights; MLP {count(mlp):,})")
if full:  # quick mode's few steps on few images leave both short of PCA
    lesson.record("mlp_vs_pca_mse_ratio", mlp_mse / pca_mse, max=0.8)
    lesson.record("conv_vs_mlp_mse_ratio", conv_mse / mlp_mse, max=0.99)
with torch.no_grad():
    rows = [x_test[:8], mlp(x_test[:8].to(device)).cpu(), conv(x_test[:8].to(device)).cpu()]
lesson.savefig(image_grid(torch.cat(rows), ["input"] * 8 + ["MLP"] * 8 + ["conv"] * 8), "reconstructions")

# %% [markdown]
# What to notice: the row of MLP reconstructions keeps each garment's shape and loses its texture;
# the conv autoencoder keeps more of the edges with the same code size.
#
# ## How big a code? The bottleneck swept
#
# One MLP autoencoder per code size, a few epochs each, against PCA with as many components. Then the
# 2-D codes of the test images: an autoencoder with two numbers per image draws the whole test set
# on a page; a nearest-neighbour classifier on those two numbers says how much of the class survives.

# %%
sweep = {}
for k in cfg.code_sizes:
    seed_everything(cfg.seed)
    model = train_ae(MLPAutoencoder(num_pixels, k).to(device), x_fit, x_val, cfg.sweep_epochs)
    sweep[k] = (errors(model, x_val).mean().item(), pca_errors(x_fit, x_val, k, basis).mean().item(), model)
    print(f"code {k:3d}: autoencoder val MSE {sweep[k][0]:.4f}   PCA {sweep[k][1]:.4f}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
ax1.plot(list(sweep), [v[0] for v in sweep.values()], "o-", label="MLP autoencoder")
ax1.plot(list(sweep), [v[1] for v in sweep.values()], "s--", label="PCA")
ax1.set(xscale="log", xlabel="code size", ylabel="validation MSE per pixel", title="error against code size")
ax1.legend()
small, large = min(cfg.code_sizes), max(cfg.code_sizes)
with torch.no_grad():
    codes = {p: sweep[small][2].encoder(x.to(device)).cpu() for p, x in (("fit", x_fit), ("test", x_test))}
knn_acc = KNeighborsClassifier(5).fit(codes["fit"], fit_data.y).score(codes["test"], test_data.y)
for c in range(len(train_data.classes)):
    sel = test_data.y == c
    ax2.scatter(codes["test"][sel, 0], codes["test"][sel, 1], s=2, label=train_data.classes[c])
ax2.set(title=f"{small}-D codes of the test images (5-NN accuracy {knn_acc:.2f})")
ax2.legend(markerscale=5, fontsize=7)
lesson.savefig(fig, "bottleneck")
if full:
    lesson.record("sweep_smallest_vs_largest_mse_ratio", sweep[small][0] / sweep[large][0], min=2)
    lesson.record(f"code{small}_vs_pca_mse_ratio", sweep[small][0] / sweep[small][1], max=0.8)
lesson.record(f"code{small}_knn_acc", knn_acc, min=0.55 if full else 0.3, chance=0.1)

# %% [markdown]
# ## Denoising: learn to undo the noise
#
# A denoising autoencoder (Vincent et al. 2008) sees a corrupted image and is asked for the clean
# one. Two corruptions: Gaussian noise (clipped to [0, 1]) and masking noise (a random half of the
# pixels set to 0); each training batch mixes both. The yardsticks need no learning: a Gaussian blur
# and a median filter, each at the setting that scores best on the *validation* images. Quality is
# PSNR, `10 log10(1 / MSE)` for pixels in [0, 1], in decibels (higher is better).

# %%
corrupt = {"gaussian": lambda x: (x + cfg.noise_std * torch.randn_like(x)).clamp(0, 1),
           "masking": lambda x: x * (torch.rand_like(x) > cfg.mask_p)}  # fmt: skip


def mixed_noise(x: torch.Tensor) -> torch.Tensor:
    pick = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
    return torch.where(pick, corrupt["gaussian"](x), corrupt["masking"](x))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = min(math.ceil(3 * sigma), x.shape[-1] - 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    x = F.pad(x, (r, r, r, r), mode="reflect")
    return F.conv2d(F.conv2d(x, (k / k.sum()).view(1, 1, 1, -1)), (k / k.sum()).view(1, 1, -1, 1))


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    r = size // 2
    windows = F.pad(x, (r, r, r, r), mode="reflect").unfold(2, size, 1).unfold(3, size, 1)  # (N,1,H,W,s,s)
    return windows.flatten(-2).median(-1).values


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return (10 * torch.log10(1 / (x_hat - x).flatten(1).pow(2).mean(1).clamp(min=1e-10))).mean().item()


filters = {f"blur {s}": (gaussian_blur, s) for s in (0.5, 0.8, 1.2, 2.0)}
filters |= {f"median {s}": (median_filter, s) for s in (3, 5)}
seed_everything(cfg.seed)
dae = ConvAutoencoder(side, 64, width=32).to(device)  # a wider code: a denoiser keeps detail
train_ae(dae, x_fit, x_val, cfg.num_epochs, mixed_noise, run="dae")
table, denoised = {}, {}
for kind, noise in corrupt.items():
    noisy_val, noisy_test = noise(x_val), noise(x_test)  # the same noisy images for every denoiser
    best = max(filters, key=lambda f: psnr(filters[f][0](noisy_val, filters[f][1]), x_val))  # chosen on val
    with torch.no_grad():
        denoised[kind] = torch.cat([dae(b.to(device)).float().cpu() for b in noisy_test.split(1000)])
    filtered = filters[best][0](noisy_test, filters[best][1])
    table[kind] = {"noisy": psnr(noisy_test, x_test), best: psnr(filtered, x_test),
                   "DAE": psnr(denoised[kind], x_test)}  # fmt: skip
    print(f"{kind:8s} PSNR (dB): " + "   ".join(f"{k} {v:.2f}" for k, v in table[kind].items()))
    gain = table[kind]["DAE"] - max(list(table[kind].values())[:2])  # above the input and the best filter
    if full or kind == "masking":  # in quick mode the DAE has not yet passed the median filter
        lesson.record(f"dae_gain_db_{kind}", gain, min=2.0 if full else 0.5)
grid = torch.cat([x_test[:6], corrupt["gaussian"](x_test[:6]), denoised["gaussian"][:6],
                  corrupt["masking"](x_test[:6]), denoised["masking"][:6]])  # fmt: skip
lesson.savefig(image_grid(grid, ncols=6), "denoising")

# %% [markdown]
# What to notice: the blur removes noise and edges alike, the median filter keeps edges but not
# the masked half of the image; the DAE has learned what garments look like, so it fills the holes
# with what is likely there. The recorded gain is the DAE's PSNR above the better of the noisy input
# and the best filter.
#
# ## Anomaly detection by reconstruction error
#
# Train an autoencoder on *normal* rows only; an anomaly, unlike anything it was trained on, comes
# back worse, so the reconstruction error is an anomaly score. `dlkit.anomaly.normal_only_split`
# keeps half of the normal rows and every anomaly for the test; IsolationForest (Liu et al. 2008), the
# usual baseline, is fitted on the same training rows. Average precision (AP) is the number to read
# when anomalies are rare: guessing scores the prevalence; ROC-AUC guessing scores 0.5.


# %%
def ae_vs_forest(x_train, x_val, x_score, y_score, seed: int, images: bool = False) -> tuple[dict, dict]:
    """An autoencoder and an IsolationForest fitted on normal rows x_train; both score x_score."""
    seed_everything(seed)
    n = x_train[0].numel()
    if images:  # pixels in [0, 1]: a sigmoid output, no scaling
        scale, model, epochs, patience = (lambda x: x), MLPAutoencoder(n, 16, 128), cfg.one_class_epochs, None
    else:  # tabular: standardised columns, a linear output, a code of a quarter of the features
        scale, epochs, patience = ColumnScaler.fit(x_train), cfg.anomaly_epochs, 10
        model = MLPAutoencoder(n, max(2, n // 4), hidden=64, sigmoid=False)
    train_ae(model.to(device), scale(x_train), scale(x_val), epochs, patience=patience)
    forest = isolation_forest_scores(x_train.flatten(1), x_score.flatten(1), seed=seed)
    return detection_scores(y_score, errors(model, scale(x_score))), detection_scores(y_score, forest)


def mean_of(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def versus(ae: dict, forest: dict) -> str:
    return (f"autoencoder AP {ae['ap']:.3f} ROC-AUC {ae['roc_auc']:.3f} | "
            f"IsolationForest AP {forest['ap']:.3f} ROC-AUC {forest['roc_auc']:.3f}")  # fmt: skip


sets = [s for s in ANOMALY_SETS if full or choose_dataset(s, "digits", quick=True) == s][: 5 if full else 1]
for set_name in sets or ["digits_one_vs_rest"]:
    if set_name == "digits_one_vs_rest":  # offline quick mode: digit 0 is normal, 4% of the others not
        digits, g = load_dataset("digits", "train"), torch.Generator().manual_seed(0)
        keep = (digits.y == 0) | (torch.rand(len(digits.y), generator=g) < 0.04)
        x, y = digits.x[keep].flatten(1), (digits.y[keep] != 0).long()
    else:
        data = load_dataset(set_name, "all")
        x, y = data.x, data.y
    splits = [normal_only_split(y, seed=seed) for seed in range(cfg.num_seeds)]
    runs = [ae_vs_forest(x[s.train], x[s.val], x[s.test], y[s.test], seed) for seed, s in enumerate(splits)]
    ae, forest = mean_of([r[0] for r in runs]), mean_of([r[1] for r in runs])
    print(f"{set_name:20s} {splits[0].describe(y)}\n{'':20s} {versus(ae, forest)}")
    lesson.record(f"ae_ap_over_prevalence_{set_name}", ae["ap"] / ae["prevalence"], min=2 if full else 1.5)
    lesson.record(f"ae_roc_auc_{set_name}", ae["roc_auc"], min=0.7 if full else 0.6, chance=0.5)

# %% [markdown]
# What to notice: read the two columns side by side. On ODDS mnist (100 pixel features of digits, the
# anomalies another digit) the autoencoder wins clearly: an unfamiliar shape rebuilds badly. On the
# medical sets (cardio, thyroid, annthyroid), where an anomaly differs in one or two measurements of
# few, the forest, which isolates one feature at a time, wins in AP and ROC-AUC. Both are far above
# chance (AP = the prevalence); the autoencoder is a tool for the right data, not a free upgrade.
#
# ## One class of Fashion-MNIST against the rest
#
# The same idea on images: each class in turn is "normal"; the autoencoder trains on its training
# images only and scores its test images mixed with 10% images of other classes.

# %%
rows = []
for c in range(cfg.num_one_class):
    normal_test, others = x_test[test_data.y == c], x_test[test_data.y != c]
    pick = torch.randperm(len(others), generator=torch.Generator().manual_seed(c))[: len(normal_test) // 9]
    x_score = torch.cat([normal_test, others[pick]])
    y_score = torch.cat([torch.zeros(len(normal_test)), torch.ones(len(pick))]).long()
    normal = (x_fit[fit_data.y == c], x_val[val_data.y == c])  # its training and validation images
    rows.append(ae_vs_forest(*normal, x_score, y_score, cfg.seed, images=True))
    print(f"normal = {train_data.classes[c]:12s} {versus(*rows[-1])}")
ae, forest = mean_of([r[0] for r in rows]), mean_of([r[1] for r in rows])
print(f"mean over {len(rows)} classes: {versus(ae, forest)}")
lesson.record("one_class_ae_roc_auc", ae["roc_auc"], min=0.8 if full else 0.65, chance=0.5)

# %% [markdown]
# ## What you measured
#
# - the MLP autoencoder's reconstruction error below PCA's with the same code size, and the conv
#   autoencoder's at least as low with a sixth of the weights;
# - the error against the code size, and a 2-D code that keeps enough of the class for 5-NN;
# - a denoising autoencoder that beats both the noisy input and the best non-learned filter, in dB;
# - anomaly detection by reconstruction error on real anomaly sets, next to IsolationForest on the
#   same splits: where the autoencoder wins and where it loses.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub below (its docstring says what to return), then run the last cell or
# `dlkit check advanced/01` in a terminal. The checks use a tiny autoencoder in float64.

# %% tags=["exercise"]
import torch


def masking_noise(x: torch.Tensor, p: float) -> torch.Tensor:
    """Return a copy of the images x (N, C, H, W) with each pixel set to 0 with probability p.

    A fresh random mask each call; x itself must not change (it is the denoiser's target), and the
    kept pixels keep their values (no 1 / (1 - p) rescaling, unlike `F.dropout`).
    """
    raise NotImplementedError


# %% tags=["exercise"]
from collections.abc import Callable

import torch
from torch import nn


def denoising_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   corrupt: Callable[[torch.Tensor], torch.Tensor]) -> float:  # fmt: skip
    """One training step of a denoising autoencoder on the clean batch x; return the loss as a float.

    The model sees corrupt(x) and is scored, with the mean squared error, against the clean x.
    Clear the gradients before backward, then step the optimizer.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
from torch import nn


def reconstruction_scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return each example's anomaly score (N,): the mean squared error of its reconstruction.

    The mean runs over every dimension but the first. Score in eval mode (dropout off) and without
    recording gradients, as the lesson's `errors` does.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
