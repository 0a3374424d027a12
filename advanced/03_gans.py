# %% [markdown]
# # Advanced 03 · GANs: a generator against a discriminator, and how to measure what it makes
#
# A generative adversarial network (Goodfellow et al. 2014) trains two networks against each other:
# the generator G turns noise z into an image, the discriminator D tells real images from G's. G
# learns from D's gradient alone, never from a pixel loss, so its images are sharp where a VAE's are
# blurred. The game is fragile: we break it on purpose, repair it, and measure every result.
#
# **What you will learn**
# - a DCGAN (Radford et al. 2016) for Fashion-MNIST, trained by hand with the non-saturating loss;
# - a failure: a discriminator that learns too fast wins, its loss goes to 0 and G stops learning;
#   and the fixes: two learning rates, spectral normalisation, one-sided label smoothing;
# - a conditional GAN that draws the class you ask for; checkpoints picked on held-out images;
# - measuring samples offline: the Frechet distance (FID's formula) in the features of the course's
#   own Fashion-MNIST CNN, next to a floor (real vs real) and to noise; the share of each
#   class (mode collapse); precision and recall (Kynkaanniemi et al. 2019); against lesson 02's VAE.

# %%
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from dlkit.checkpoint import load_checkpoint
from dlkit.config import flag
from dlkit.data import choose_dataset, load_train_test, split
from dlkit.device import autocast, resolve_amp_dtype, seed_everything
from dlkit.generative import (
    ConvVAE,
    embed,
    frechet_distance,
    gaussian_stats,
    load_or_train_feature_net,
    sample_quality,
    train_vae,
)  # fmt: skip
from dlkit.lesson import Lesson, LessonConfig, runs_root
from dlkit.plots import image_grid, plot_curves


@dataclass
class Config(LessonConfig):
    num_test: int = flag(0, help="test images, the real reference of every distance (0: all 10,000)", min=0)
    num_val: int = flag(5000, help="training images held out to pick each GAN's checkpoint", min=100)
    eval_every: int = flag(500, help="steps between the checkpoints compared on the held-out images", min=1)
    z_dim: int = flag(64, help="size of the generator's noise vector", min=1)
    width: int = flag(16, help="channels of the narrowest conv layer of G and D", min=1)
    batch_size: int = 64
    g_lr: float = flag(2e-4, help="generator learning rate (Adam, betas 0.5, 0.999)", above=0, max=1)
    d_lr: float = flag(
        4e-4, help="discriminator learning rate: two time scales (Heusel et al. 2017)", above=0
    )
    gan_steps: int = flag(
        6000, help="steps of the DCGAN and again of the cGAN (~3 min each on one core)", min=1
    )
    gan_seconds: float = flag(0.0, help="train each for this many seconds instead (0: --gan-steps)", min=0)
    bad_steps: int = flag(400, help="steps of the broken and the repaired GAN, compared", min=10)
    feature_epochs: int = flag(3, help="epochs of the feature CNN (trained once, then reused)", min=1)
    num_samples: int = flag(10_000, help="samples of each model that are measured", min=100)
    vae_epochs: int = flag(4, help="if lesson 02 has not run: epochs of a VAE trained here", min=1)


quick = {"num_test": 1000, "num_val": 300, "eval_every": 20, "gan_steps": 40, "bad_steps": 60,
         "feature_epochs": 2, "num_samples": 1000, "vae_epochs": 1}  # fmt: skip
lesson = Lesson("advanced/03_gans", Config, quick=quick)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick
amp_dtype = resolve_amp_dtype(None, device)  # bf16 where the hardware runs it natively

name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
print("data:", "Fashion-MNIST (28x28)" if name == "fashion_mnist" else "scikit-learn digits (8x8)")
num_train = 3000 if lesson.quick and name == "fashion_mnist" else 0
train_data, test_data = load_train_test(name, num_train=num_train, num_test=cfg.num_test, seed=cfg.seed)
lesson.uses_data("images", train_data.source)
val_data, fit_data = split(train_data, cfg.num_val, seed=cfg.seed)  # the GANs never train on val_data
x_real, y_real = fit_data.x * 2 - 1, fit_data.y  # G's tanh makes [-1, 1]; so do the real images
side, classes, num_classes = x_real.shape[-1], train_data.classes, len(train_data.classes)

# %% [markdown]
# ## The measuring instrument first
#
# FID compares Inception-v3 features of real and generated images; those weights download at run
# time, and an ImageNet network knows little about 28x28 clothes anyway. The same formula works in
# any feature space, so we train the course's CNN (`dlkit.nets.make_cnn`) as a Fashion-MNIST
# classifier and use its penultimate layer. Before any GAN, its scale: the **floor** is the distance
# between real training and real test images; for a ceiling, uniform noise (a generator can do even
# worse: early in training its blobs are further from clothes, in these features, than noise is).

# %%
tag = f"{name} {len(train_data)}"  # a checkpoint of other data is not reused
net, info = load_or_train_feature_net(train_data.x, train_data.y, path=lesson.run_dir / "feature_net.pt",
                                      tag=tag, device=device, num_epochs=cfg.feature_epochs)  # fmt: skip
test_feats, test_preds = embed(net, test_data.x)
feature_acc = (test_preds == test_data.y).float().mean().item()
print(
    f"feature CNN: test accuracy {feature_acc:.4f} ({'trained now' if info['trained_now'] else 'reloaded'})"
)
lesson.record("feature_net_test_acc", feature_acc, min=0.87 if full else 0.6, chance=1 / len(classes))
val_stats = gaussian_stats(embed(net, val_data.x)[0])  # the reference that picks checkpoints
some_train = train_data.x[torch.randperm(len(train_data))[: cfg.num_samples]]
noise = torch.rand(cfg.num_samples, 1, side, side)
quality = {"floor: train images": sample_quality(net, test_feats, some_train),
           "ceiling: uniform noise": sample_quality(net, test_feats, noise)}  # fmt: skip

# %% [markdown]
# ## DCGAN
#
# The generator maps z to a (4w, side/4, side/4) map and doubles the side twice with transposed
# convolutions (BatchNorm and ReLU between, tanh at the end); the discriminator mirrors it with
# stride-2 convolutions and LeakyReLU and ends in one logit. Both take an optional class label: the
# generator appends an embedding of it to z, the discriminator adds the dot product of an embedding
# with its features ("projection", Miyato and Koyama 2018). Without labels they are a plain DCGAN.


# %%
class Generator(nn.Module):
    def __init__(self, side: int, z_dim: int, width: int, num_classes: int = 0) -> None:
        super().__init__()
        s, w = side // 4, width
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        self.net = nn.Sequential(
            nn.Linear(z_dim * (2 if num_classes else 1), 4 * w * s * s), nn.Unflatten(1, (4 * w, s, s)),
            nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # (B, 2w, 2s, 2s)
            nn.ConvTranspose2d(2 * w, 1, 4, 2, 1), nn.Tanh())  # fmt: skip

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z if self.embed is None else torch.cat([z, self.embed(y)], 1))  # (B, 1, side, side)


class Discriminator(nn.Module):
    def __init__(self, side: int, width: int, num_classes: int = 0, spectral: bool = False) -> None:
        super().__init__()
        s, w, sn = side // 4, width, spectral_norm if spectral else (lambda m: m)
        self.body = nn.Sequential(
            sn(nn.Conv2d(1, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2), nn.Flatten())  # fmt: skip
        self.out = sn(nn.Linear(4 * w * s * s, 1))
        self.embed = sn(nn.Embedding(num_classes, 4 * w * s * s)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)  # (B, 4w * s * s)
        logit = self.out(h).squeeze(1)  # (B,)
        return logit if self.embed is None else logit + (self.embed(y) * h).sum(1)


# %% [markdown]
# ## The training loop
#
# Each step: D learns to call real images real and G's images fake, then G learns to make D call its
# images real. G's loss is the *non-saturating* one, -log D(G(z)), whose gradient stays large while D
# still rejects G's images. `smooth` is the target for real images (one-sided label smoothing,
# Salimans et al. 2016: 0.9 keeps D from growing over-confident). We log D's loss with target 1, so
# that "D wins" reads the same in every setting: that loss goes to 0.


# %%
@dataclass
class GAN:
    G: Generator
    D: Discriminator
    g_lr: float
    d_lr: float
    smooth: float = 1.0
    steps: int = 0
    d_losses: list[float] = field(default_factory=list)
    val_fd: list[float] = field(default_factory=list)  # at each checkpoint of train_and_pick
    opts: tuple = ()

    def __post_init__(self) -> None:
        self.G, self.D = self.G.to(device), self.D.to(device)
        self.opts = (torch.optim.Adam(self.G.parameters(), self.g_lr, betas=(0.5, 0.999)),
                     torch.optim.Adam(self.D.parameters(), self.d_lr, betas=(0.5, 0.999)))  # fmt: skip


def train_gan(gan: GAN, *, steps: int | None = None, seconds: float | None = None, conditional: bool = False):
    """Train ``gan`` on (x_real, y_real) for ``steps`` more steps or ``seconds`` more seconds."""
    opt_g, opt_d = gan.opts
    gan.G.train(), gan.D.train()
    start, stop = time.perf_counter(), gan.steps + (steps or 10**9)
    while gan.steps < stop and (seconds is None or time.perf_counter() - start < seconds):
        idx = torch.randint(len(x_real), (cfg.batch_size,))
        real = x_real[idx].to(device)
        labels = y_real[idx].to(device) if conditional else None
        with autocast(device, amp_dtype):
            fake = gan.G(torch.randn(cfg.batch_size, cfg.z_dim, device=device), labels)
            d_real, d_fake = gan.D(real, labels).float(), gan.D(fake.detach(), labels).float()
        loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, gan.smooth)) + \
            F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with autocast(device, amp_dtype):
            d_on_fake = gan.D(fake, labels).float()
        loss_g = F.binary_cross_entropy_with_logits(d_on_fake, torch.ones_like(d_on_fake))  # non-saturating
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        gan.steps += 1
        with torch.no_grad():
            gan.d_losses.append((F.softplus(-d_real).mean() + F.softplus(d_fake).mean()).item())  # target 1/0
    return gan


@torch.no_grad()
def sample(G: Generator, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images in [0, 1] (N, 1, side, side), 500 at a time, BatchNorm with its running statistics."""
    G.eval()
    z = torch.randn(n, cfg.z_dim, device=device)
    parts = [G(zb, None if labels is None else labels[i * 500 : (i + 1) * 500].to(device)).float().cpu()
             for i, zb in enumerate(z.split(500))]  # fmt: skip
    G.train()
    return (torch.cat(parts) + 1) / 2


def train_and_pick(gan: GAN, *, steps=None, seconds=None, conditional: bool = False, n: int = 2000):
    n = min(n, cfg.num_samples)
    """Train in chunks of cfg.eval_every steps; after each, the Frechet distance of n samples to the
    held-out training images. G ends at its best checkpoint: picked on validation, never on test."""
    labels, best = torch.arange(n) % num_classes if conditional else None, (float("inf"), 0, None)
    start, stop = time.perf_counter(), gan.steps + (steps or 10**9)
    while gan.steps < stop and (seconds is None or time.perf_counter() - start < seconds):
        train_gan(gan, steps=min(cfg.eval_every, stop - gan.steps), conditional=conditional)
        fd = frechet_distance(*val_stats, *gaussian_stats(embed(net, sample(gan.G, n, labels))[0]))
        gan.val_fd.append(fd)
        if fd < best[0]:
            best = (fd, gan.steps, copy.deepcopy(gan.G.state_dict()))
    gan.G.load_state_dict(best[2])
    return best[:2]  # (validation distance, step) of the checkpoint kept


# %% [markdown]
# ## A GAN that fails, and the same GAN repaired
#
# Broken: the discriminator learns 100 times faster than the generator (2e-3 against 2e-5), with
# plain 0/1 targets. Repaired: two learning rates that keep both players moving (D 4e-4, G 2e-4:
# the two time-scale rule of Heusel et al. 2017), spectral normalisation on D (each layer's largest
# singular value divided out, so D cannot sharpen its verdict without bound: Miyato et al. 2018) and
# real targets of 0.9. Same steps for both.

# %%
seed_everything(cfg.seed)
bad = train_gan(GAN(Generator(side, cfg.z_dim, cfg.width), Discriminator(side, cfg.width), 2e-5, 2e-3),
                steps=cfg.bad_steps)  # fmt: skip
seed_everything(cfg.seed)
dcgan = GAN(Generator(side, cfg.z_dim, cfg.width), Discriminator(side, cfg.width, spectral=True),
            cfg.g_lr, cfg.d_lr, smooth=0.9)  # fmt: skip
train_gan(dcgan, steps=cfg.bad_steps)
tail = max(cfg.bad_steps // 10, 5)  # the mean over the last tenth of the steps
d_bad, d_fixed = (sum(g.d_losses[-tail:]) / tail for g in (bad, dcgan))
fd_bad, fd_fixed = (frechet_distance(*val_stats, *gaussian_stats(embed(net, sample(g.G, 2000))[0]))
                    for g in (bad, dcgan))  # fmt: skip
print(
    f"after {cfg.bad_steps} steps: D loss broken {d_bad:.3f}, repaired {d_fixed:.3f}; "
    f"Frechet distance to the held-out images broken {fd_bad:.1f}, repaired {fd_fixed:.1f}"
)
lesson.savefig(plot_curves({"broken: D 2e-3, G 2e-5": bad.d_losses, "repaired": dcgan.d_losses},
                           xlabel="step", ylabel="D loss (targets 1/0)", logy=True), "d_loss")  # fmt: skip
lesson.record("broken_d_loss", d_bad, max=0.05)
if full:  # quick mode's few steps are not enough for G to catch up with either D
    lesson.record("repaired_minus_broken_d_loss", d_fixed - d_bad, min=0.3)
    lesson.record("broken_vs_repaired_fd_ratio", fd_bad / fd_fixed, min=1.5)

# %% [markdown]
# What to notice: the broken D's loss falls to nearly 0 within a few hundred steps: it separates
# real from fake perfectly, and G, learning 100 times slower, never catches up; its samples stay
# blobs. The repaired D's loss stays near log 4 ~ 1.4 (a D that cannot tell, the game's equilibrium)
# to 1. Now the repaired DCGAN trains on. A GAN's loss says little about its samples, and its
# samples get worse as well as better from one step to the next, so we keep a *checkpoint*: every
# `eval_every` steps, the distance of 2,000 samples to the held-out training images, and the best.

# %%
budget = {"seconds": cfg.gan_seconds} if cfg.gan_seconds else {"steps": cfg.gan_steps}
fd_val, step = train_and_pick(dcgan, **budget)
print(f"DCGAN: {dcgan.steps} steps ({dcgan.steps * cfg.batch_size / len(x_real):.1f} epochs); "
      f"kept step {step} (distance to the held-out images {fd_val:.1f})")  # fmt: skip
dcgan_samples = sample(dcgan.G, cfg.num_samples)
lesson.savefig(image_grid(dcgan_samples[:64], ncols=8), "dcgan_samples")

# %% [markdown]
# ## A conditional GAN
#
# Give G a class label with z and D the same label with the image: D now asks "is this a real
# *sandal*?", so G must draw the class asked for. The feature CNN checks that it does: its accuracy
# on the samples, against the label G was given.

# %%
seed_everything(cfg.seed)
G, D = Generator(side, cfg.z_dim, cfg.width, num_classes), Discriminator(side, cfg.width, num_classes, True)
cgan = GAN(G, D, cfg.g_lr, cfg.d_lr, smooth=0.9)
fd_val, step = train_and_pick(cgan, **budget, conditional=True)
asked = torch.arange(cfg.num_samples) % num_classes
cgan_samples = sample(cgan.G, cfg.num_samples, asked)
cgan_acc = (embed(net, cgan_samples)[1] == asked).float().mean().item()
print(f"cGAN: {cgan.steps} steps, kept step {step} (held-out distance {fd_val:.1f}); the feature CNN "
      f"finds the asked class in {cgan_acc:.1%} of its samples")  # fmt: skip
lesson.savefig(plot_curves({"DCGAN": dcgan.val_fd, "conditional GAN": cgan.val_fd}, logy=True,
                           xlabel=f"checkpoint (every {cfg.eval_every} steps)",
                           ylabel="Frechet distance to held-out images"), "checkpoints")  # fmt: skip
order = torch.argsort(asked[:100], stable=True)
lesson.savefig(image_grid(cgan_samples[:100][order], ncols=10), "cgan_samples")  # one row per class
if full:
    lesson.record("cgan_label_acc", cgan_acc, min=0.7, chance=1 / len(classes))

# %% [markdown]
# ## Lesson 02's VAE, measured the same way
#
# Its checkpoint is in lesson 02's run folder when that lesson has run (as `dlkit course` does);
# otherwise the same conv VAE is trained here for a few epochs, and the report says so.

# %%
vae_path = runs_root() / "advanced" / "02_variational_ae" / "conv_vae.pt"
saved = load_checkpoint(vae_path, restore_rng=False) if vae_path.is_file() else None
if saved is not None and saved["config"]["data"] == name:
    vae = ConvVAE(side, latent_dim=saved["config"]["latent_dim"]).to(device)
    vae.load_state_dict(saved["model"])
    vae_name = "VAE (lesson 02)"
else:
    seed_everything(cfg.seed)
    vae = ConvVAE(side).to(device)
    train_vae(vae, train_data.x, device=device, num_epochs=cfg.vae_epochs, lr=3e-3, cosine=True)
    vae_name = f"VAE ({cfg.vae_epochs} epochs here: lesson 02 has not run)"
with torch.no_grad():
    vae.eval()
    vae_samples = torch.cat([torch.sigmoid(vae.decode(torch.randn(500, vae.latent_dim, device=device))).cpu()
                             for _ in range(cfg.num_samples // 500 + 1)])[: cfg.num_samples]  # fmt: skip

# %% [markdown]
# ## All of them side by side
#
# Distance (lower is better), precision (samples that look real), recall (real images the samples
# cover) and the rarest and commonest class among the samples, by the feature CNN. A model whose
# rarest class is under 5% has dropped modes.

# %%
for label, images in (("DCGAN", dcgan_samples), ("conditional GAN", cgan_samples), (vae_name, vae_samples)):
    quality[label] = sample_quality(net, test_feats, images)
print(f"{'':48s} {'Frechet':>8s} {'precision':>10s} {'recall':>8s} {'min class':>10s} {'max class':>10s}")
for label, q in quality.items():
    print(f"{label:48s} {q.frechet:8.2f} {q.precision:10.3f} {q.recall:8.3f} "
          f"{q.shares.min():10.1%} {q.shares.max():10.1%}")  # fmt: skip
lesson.savefig(image_grid(torch.cat([dcgan_samples[:16], vae_samples[:16]]), ncols=16), "dcgan_vs_vae")
fig, ax = plt.subplots(figsize=(11, 3.5))
for i, label in enumerate(["floor: train images", "DCGAN", "conditional GAN", vae_name]):
    ax.bar(torch.arange(num_classes) + 0.2 * i - 0.3, quality[label].shares, width=0.2,
           label=label.split(" (")[0])  # fmt: skip
ax.axhline(0.05, color="gray", linestyle="--", label="5%: a class dropped below it is a lost mode")
ax.set(xticks=range(num_classes), xticklabels=classes, ylabel="share of samples", title="classes by CNN")
ax.legend(fontsize=7)
lesson.savefig(fig, "class_shares")
fd = {k: q.frechet for k, q in quality.items()}
lesson.record("floor_vs_noise_fd_ratio", fd["floor: train images"] / fd["ceiling: uniform noise"], max=0.05)
if full:
    lesson.record("dcgan_vs_noise_fd_ratio", fd["DCGAN"] / fd["ceiling: uniform noise"], max=0.5)
    lesson.record("dcgan_vs_vae_fd_ratio", fd["DCGAN"] / fd[vae_name], max=0.97)  # below: see README.md
    lesson.record("dcgan_min_class_share", quality["DCGAN"].shares.min(), min=0.05, chance=0)
    # far above noise's 0.001, though below the VAE's: precision falls as the samples spread (recall)
    lesson.record("dcgan_precision", quality["DCGAN"].precision, min=0.25, chance=0)
    lesson.record("dcgan_recall", quality["DCGAN"].recall, min=0.2, chance=0)

# %% [markdown]
# What to notice (in full mode; quick mode draws blobs): the DCGAN's distance is the lowest, its samples
# spread over the data (every class above 5%, a recall far above the others'), its precision lowest.
# The VAE's blurred samples sit near the middle of the classes, precise but covering little (recall
# near 0). The conditional GAN draws the asked class and is precise, but with a recall near 0: a
# few kinds of garment per class, and a class it is asked for can come out as a neighbouring one.
#
# **What you measured:** the repaired game against the broken one; the DCGAN's distance next to the
# floor, noise and the VAE; its class shares, precision, recall; the conditional GAN's classes.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub below (its docstring says what to return), then run the last cell or
# `dlkit check advanced/03` in a terminal. The checks use tiny G and D in float64, autograd as the oracle.

# %% tags=["exercise"]
import torch


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Return G's non-saturating loss, the batch mean of -log sigmoid(d_fake), for D's logits d_fake (B,).

    Not the saturating log(1 - sigmoid(d_fake)): its gradient vanishes while D rejects G's images. It
    must stay finite for logits of -200 in float32: -log sigmoid(d) = softplus(-d).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
from torch import nn


def discriminator_step(G: nn.Module, D: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                       z: torch.Tensor, smooth: float = 0.9) -> float:  # fmt: skip
    """One step of D (as in `train_gan`): BCE(D(real), smooth) + BCE(D(G(z)), 0) on logits; return the loss.

    G must get no gradient from it (the fake batch is detached); D's leftover gradients are cleared
    before backward; only opt_d steps. D returns one logit per image, (B,).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch
from torch import nn


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """WGAN-GP's penalty: the batch mean of (||grad D(x_hat)|| - 1)^2, x_hat = alpha real + (1 - alpha) fake.

    real, fake: (B, C, H, W); alpha: (B, 1, 1, 1). Each image's gradient is flattened before its norm.
    D must be able to learn from the penalty: torch.autograd.grad(..., create_graph=True).
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
