# %% [markdown]
# # Advanced 02 · Variational autoencoders: a generative model you can sample from
#
# An autoencoder's codes lie wherever training put them: pick a random code and the decoder returns
# noise. A variational autoencoder (Kingma and Welling 2014) makes the codes *distributed*: the
# encoder outputs a Gaussian q(z|x) = N(mu, sigma^2) per image, the decoder rebuilds the image from a
# sample of it, and a KL term keeps every q(z|x) close to N(0, I). Then a sample z ~ N(0, I), decoded,
# is a new image. The loss is minus the evidence lower bound (ELBO) on log p(x).
#
# **What you will learn**
# - the reparameterization trick, z = mu + sigma * eps, and a check that its gradient is the gradient
#   of the expectation (a case with a closed form), with a fraction of the score-function's variance;
# - the KL term in closed form, checked against a Monte-Carlo estimate;
# - pytorch/examples' VAE and loss (so the numbers compare), a convolutional VAE that beats it, and an
#   importance-weighted bound (Burda et al. 2016) tighter than the ELBO;
# - beta-VAE's trade-off of reconstruction and KL, "posterior collapse", and what a latent space
#   looks like: interpolations, a 2-D map, samples.

# %%
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.neighbors import KNeighborsClassifier

from dlkit.checkpoint import save_checkpoint
from dlkit.config import flag
from dlkit.data import choose_dataset, load_train_test, split
from dlkit.device import seed_everything
from dlkit.generative import MLPVAE, ConvVAE, iwae_nll, train_vae, vae_test_loss
from dlkit.lesson import Lesson, LessonConfig
from dlkit.plots import image_grid, plot_curves

ANCHOR_TEST_LOSS = 244.1  # pytorch/examples' VAE, 10 epochs on Fashion-MNIST, measured on this machine


@dataclass
class Config(LessonConfig):
    num_train: int = flag(0, help="training images, a tenth held out for validation (0: all 60,000)", min=0)
    num_test: int = flag(0, help="test images (0: all 10,000)", min=0)
    num_samples: int = flag(1_000_000, help="Monte-Carlo samples for the gradient and KL checks", min=1000)
    lr: float = 1e-3
    batch_size: int = 128
    mlp_epochs: int = flag(10, help="epochs of pytorch/examples' VAE (its default is 10)", min=1)
    conv_epochs: int = flag(20, help="epochs of the conv VAE (about 5 minutes on one CPU core)", min=1)
    conv_lr: float = flag(3e-3, help="peak learning rate of the conv VAE (cosine to 0)", above=0, max=1)
    conv_warmup: int = flag(1500, help="steps the conv VAE's learning rate ramps up over", min=0)
    latent_dim: int = flag(20, help="latent dimensions of the conv VAE (as the MLP's)", min=1)
    betas: tuple[float, ...] = flag((0.5, 1.0, 4.0, 16.0), help="the KL weights of the beta-VAE sweep")
    beta_epochs: int = flag(3, help="epochs of each VAE of the beta sweep", min=1)
    iwae_k: int = flag(64, help="importance samples of the IWAE bound", min=2)
    iwae_images: int = flag(2000, help="test images the IWAE bound is computed on", min=1)


quick = {"num_train": 3000, "num_test": 1000, "num_samples": 200_000, "mlp_epochs": 5, "conv_epochs": 1,
         "conv_warmup": 0, "beta_epochs": 4, "betas": (1.0, 16.0), "iwae_k": 16,
         "iwae_images": 300}  # fmt: skip
lesson = Lesson("advanced/02_variational_ae", Config, quick=quick)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
print("data:", "Fashion-MNIST (28x28)" if name == "fashion_mnist" else "scikit-learn digits (8x8)")
train_data, test_data = load_train_test(name, num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
val_data, fit_data = split(train_data, len(train_data) // 10, seed=cfg.seed)
lesson.uses_data("images", train_data.source)
x_fit, x_val, x_test = fit_data.x, val_data.x, test_data.x  # (N, 1, H, W), pixels in [0, 1]
side, classes = x_fit.shape[-1], train_data.classes

# %% [markdown]
# ## The reparameterization trick, checked
#
# The loss needs E_{z ~ q}[f(z)] and its gradient with respect to q's parameters. Sampling z directly
# cuts the graph: a sample is a number, not a function of mu. Writing z = mu + sigma * eps with
# eps ~ N(0, 1) moves the randomness into eps, and z becomes a differentiable function of mu and
# sigma. For f(z) = exp(z) everything has a closed form: E[exp(z)] = exp(mu + sigma^2 / 2), so
# d/dmu = E and d/dlogvar = E * sigma^2 / 2. The alternative without the trick, the score function
# (REINFORCE), is unbiased too, but each sample's gradient varies far more.


# %%
def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample of N(mu, exp(logvar)) that gradients flow through: mu + sigma * eps."""
    eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


seed_everything(cfg.seed)
mu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
logvar = torch.tensor(math.log(0.25), dtype=torch.float64, requires_grad=True)  # sigma = 0.5
z = reparameterize(mu.expand(cfg.num_samples), logvar.expand(cfg.num_samples))
torch.exp(z).mean().backward()  # Monte Carlo estimate of E[exp(z)], differentiated through the samples
expectation = math.exp(0.3 + 0.25 / 2)
analytic = torch.tensor([expectation, expectation * 0.25 / 2], dtype=torch.float64)
sampled = torch.stack([mu.grad, logvar.grad])
print(f"gradient (d/dmu, d/dlogvar): reparameterized {sampled.tolist()}, analytic {analytic.tolist()}")
lesson.record("reparam_grad_rel_error", ((sampled - analytic).abs() / analytic).max(), max=0.01)

with torch.no_grad():  # per-sample gradients of exp(z) w.r.t. mu: exp(z) (reparam) vs exp(z) * score
    per_sample_reparam = torch.exp(z)
    per_sample_score = torch.exp(z) * (z - 0.3) / 0.25  # d/dmu log q(z) = (z - mu) / sigma^2
ratio = per_sample_score.var() / per_sample_reparam.var()
print(f"score-function mean {per_sample_score.mean():.4f} (unbiased too), variance {ratio:.1f}x larger")
lesson.record("score_vs_reparam_variance_ratio", ratio, min=5)

# %% [markdown]
# ## The KL term, in closed form and by sampling
#
# For q = N(mu, sigma^2) per dimension and the prior p = N(0, 1):
# KL(q || p) = -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2). A Monte-Carlo estimate, the mean of
# log q(z) - log p(z) over samples of q, must agree.


# %%
def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dimension."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp())).sum(-1)


q_mu, q_logvar = (
    torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64),
    torch.tensor([0.0, -2.0, 1.0], dtype=torch.float64),
)
zs = reparameterize(q_mu.expand(cfg.num_samples, 3), q_logvar.expand(cfg.num_samples, 3))  # (S, 3)
kl_mc = (log_normal(zs, q_mu, q_logvar) - log_normal(zs, torch.zeros(3), torch.zeros(3))).mean()
kl_exact = kl_divergence(q_mu, q_logvar)
print(f"KL: closed form {kl_exact:.5f}, Monte Carlo {kl_mc:.5f} ({cfg.num_samples:,} samples)")
lesson.record("kl_mc_rel_error", abs(kl_mc - kl_exact) / kl_exact, max=0.01)

# %% [markdown]
# ## pytorch/examples' VAE, by hand
#
# The loss per image is binary cross-entropy summed over the pixels (the pixels, in [0, 1], are the
# targets) plus the KL term, as in pytorch/examples' `vae/main.py`; its model (784-400-20) lives in
# `dlkit.generative.MLPVAE`, its decoder returning logits. The test loss is this loss on the test
# images with one sampled z each, the number that example prints. Its anchor, measured here:
# **244.1** after 10 epochs on Fashion-MNIST (float32, as the example runs).


# %%
def vae_loss(logits, x, mu, logvar, beta: float = 1.0) -> torch.Tensor:
    """Summed over the batch: BCE over all pixels + beta * KL. dlkit.generative.vae_loss is beta = 1."""
    bce = F.binary_cross_entropy_with_logits(logits.float().flatten(1), x.flatten(1), reduction="sum")
    return bce + beta * kl_divergence(mu.float(), logvar.float()).sum()


def train_epochs(model, num_epochs: int, beta: float = 1.0) -> list[float]:
    optimizer, losses = torch.optim.Adam(model.parameters(), lr=cfg.lr), []
    for _ in range(num_epochs):
        model.train()
        for xb in x_fit[torch.randperm(len(x_fit))].split(cfg.batch_size):
            logits, mu, logvar = model(xb.to(device))
            loss = vae_loss(logits, xb.to(device), mu, logvar, beta) / len(xb)  # per image
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(vae_test_loss(model, x_val))  # validation: the test set waits for the end
    return losses


seed_everything(cfg.seed)
mlp_vae = MLPVAE(tuple(x_fit.shape[1:])).to(device)
mlp_curve = train_epochs(mlp_vae, cfg.mlp_epochs)
print("pytorch/examples' VAE, validation loss per epoch:", " ".join(f"{v:.1f}" for v in mlp_curve))

# %% [markdown]
# ## A convolutional VAE
#
# `dlkit.generative.ConvVAE`: two stride-2 convolutions to a dense layer, mu and logvar, the mirror
# image to decode. `train_vae` is the loop above with a cosine learning-rate decay to 0 over the run
# (a higher peak than the MLP's constant 1e-3), a linear warm-up over the first 1,500 steps (without
# it, Adam's first steps at that peak cost the final model about 2.5 nats per image) and bf16 autocast
# where the hardware runs it natively (the loss stays in float32). `benchmarks/generative_vae_speed.py`
# trains both models for the same wall-clock budget instead of a number of epochs: the issue's
# 5-minute goal.

# %%
seed_everything(cfg.seed)
conv_vae = ConvVAE(side, latent_dim=cfg.latent_dim).to(device)
info = train_vae(conv_vae, x_fit, device=device, num_epochs=cfg.conv_epochs, lr=cfg.conv_lr, cosine=True,
                 warmup_steps=cfg.conv_warmup)  # fmt: skip
val_losses = {"MLP (pytorch/examples)": vae_test_loss(mlp_vae, x_val), "conv": vae_test_loss(conv_vae, x_val)}
print(f"conv VAE: {info['epochs']} epochs in {info['seconds']:.0f} s; validation " +
      ", ".join(f"{k} {v:.2f}" for k, v in val_losses.items()))  # fmt: skip
save_checkpoint(lesson.run_dir / "conv_vae.pt", model=conv_vae, epoch=info["epochs"],
                config={"data": name, "side": side, "latent_dim": cfg.latent_dim})  # fmt: skip

# %% [markdown]
# ## beta-VAE: how much goes through the code
#
# The KL term is the *rate*, the nats each image's code carries; the BCE term is the *distortion*.
# beta-VAE (Higgins et al. 2017) weighs the rate by beta: beta > 1 buys a simpler code with blurrier
# reconstructions. Past some beta, dimensions of the code stop carrying anything at all: their
# q(z|x) equals the prior for every image and the decoder learns to ignore them. That is **posterior
# collapse**; a dimension is *active* when its mean moves with the image, Var_x(mu) > 0.01 (Burda et
# al. 2016). A strong decoder shows the same symptom at beta = 1: if it can model the images alone,
# the cheapest ELBO sends nothing through z. KL annealing and "free bits" are the usual remedies.


# %%
@torch.no_grad()
def rate_distortion(model) -> tuple[float, float, torch.Tensor, int]:
    """Distortion (BCE) and rate (KL) per validation image, the KL of each dimension, active units."""
    model.eval()
    mu, logvar = model.encode(x_val.to(device))
    logits = model.decode(reparameterize(mu, logvar))
    bce = F.binary_cross_entropy_with_logits(logits.flatten(1), x_val.to(device).flatten(1), reduction="sum")
    per_dim = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean(0)  # (latent_dim,)
    return bce.item() / len(x_val), per_dim.sum().item(), per_dim.cpu(), (mu.var(0) > 0.01).sum().item()


sweep, sweep_epochs = {}, cfg.beta_epochs * (3 if name == "digits" else 1)  # digits: ~half the images
for beta in cfg.betas:
    seed_everything(cfg.seed)
    model = MLPVAE(tuple(x_fit.shape[1:])).to(device)
    train_epochs(model, sweep_epochs, beta)
    sweep[beta] = rate_distortion(model)
    print(f"beta {beta:5.1f}: distortion {sweep[beta][0]:7.2f}  rate {sweep[beta][1]:6.2f} nats  "
          f"active units {sweep[beta][3]} of 20")  # fmt: skip
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
ax1.plot([v[1] for v in sweep.values()], [v[0] for v in sweep.values()], "o-")
for beta, v in sweep.items():
    ax1.annotate(f"beta {beta:g}", (v[1], v[0]))
ax1.set(
    xlabel="rate: KL per image (nats)", ylabel="distortion: BCE per image (nats)", title="rate vs distortion"
)
for beta, v in sweep.items():
    ax2.plot(v[2].sort(descending=True).values, "o-", label=f"beta {beta:g}")
ax2.set(
    xlabel="latent dimension (sorted)", ylabel="KL (nats)", title="KL per dimension: collapsed ones are 0"
)
ax2.legend()
lesson.savefig(fig, "beta_vae")
low, high = min(cfg.betas), max(cfg.betas)
lesson.record("rate_low_vs_high_beta_ratio", sweep[low][1] / sweep[high][1], min=2)
lesson.record("distortion_high_vs_low_beta_ratio", sweep[high][0] / sweep[low][0], min=1.1 if full else 1.05)
if full:  # collapse takes more than quick mode's few epochs
    lesson.record("collapsed_units_high_minus_low_beta", sweep[low][3] - sweep[high][3], min=3)

# %% [markdown]
# ## The latent space: a 2-D map, interpolations, samples
#
# With a 2-D code the whole latent space fits on a page: decode a grid of z and every region shows
# the garment the decoder draws there; the validation images' means, coloured by class, show where
# the encoder puts each class. Along a straight line between two images' codes, every point decodes
# to a plausible image (an autoencoder without the KL term gives no such promise).

# %%
seed_everything(cfg.seed)
vae2 = MLPVAE(tuple(x_fit.shape[1:]), latent_dim=2).to(device)
train_epochs(vae2, cfg.beta_epochs)
with torch.no_grad():
    grid = torch.linspace(-2, 2, 12)
    zs = torch.cartesian_prod(grid, grid.flip(0))[:, [1, 0]]  # rows from top (z2 = 2) to bottom
    tiles = torch.sigmoid(vae2.decode(zs.to(device))).cpu()  # (144, 1, H, W)
    codes = {p: vae2.encode(x.to(device))[0].cpu() for p, x in (("fit", x_fit), ("val", x_val))}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 6))
ax1.imshow(tiles.view(12, 12, side, side).permute(0, 2, 1, 3).reshape(12 * side, 12 * side), cmap="gray")
ax1.set(title="decoded grid, z in [-2, 2]^2", xticks=[], yticks=[])
for c in range(len(classes)):
    ax2.scatter(*codes["val"][val_data.y == c].T, s=3, label=classes[c])
ax2.legend(markerscale=4, fontsize=7)
ax2.set(title="validation images: mean of q(z|x)", xlabel="z1", ylabel="z2")
lesson.savefig(fig, "latent_map")
knn_acc = KNeighborsClassifier(5).fit(codes["fit"], fit_data.y).score(codes["val"], val_data.y)
lesson.record("latent2_knn_acc", knn_acc, min=0.55 if full else 0.4, chance=1 / len(classes))

with torch.no_grad():
    pairs = conv_vae.encode(x_val[:10].to(device))[0]  # interpolate 5 pairs of validation images
    t = torch.linspace(0, 1, 8, device=device).view(1, 8, 1)
    path = pairs[0::2, None] * (1 - t) + pairs[1::2, None] * t  # (5, 8, latent_dim)
    lerp = torch.sigmoid(conv_vae.decode(path.flatten(0, 1))).cpu()
    samples = torch.sigmoid(conv_vae.decode(torch.randn(64, cfg.latent_dim, device=device))).cpu()
lesson.savefig(image_grid(lerp, ncols=8), "interpolation")
lesson.savefig(image_grid(samples, ncols=8), "samples")

# %% [markdown]
# What to notice: the samples are garments, blurred: a Bernoulli decoder's mean image averages over
# every image the code could stand for. Lesson 03's GANs trade that blur for sharpness and measure it.
#
# ## The test set, once
#
# Both VAEs' test loss (the ELBO, one z per image, as pytorch/examples computes it), and for the
# conv VAE the importance-weighted bound with k samples per image: a tighter bound on -log p(x).

# %%
mlp_test, conv_test = vae_test_loss(mlp_vae, x_test), vae_test_loss(conv_vae, x_test)
x_iw = x_test[: cfg.iwae_images]
elbo_iw, iwae = vae_test_loss(conv_vae, x_iw), iwae_nll(conv_vae, x_iw, k=cfg.iwae_k)
print(
    f"test loss per image: pytorch/examples' VAE {mlp_test:.2f} (anchor {ANCHOR_TEST_LOSS}), conv VAE "
    f"{conv_test:.2f}; on {len(x_iw):,} test images ELBO {elbo_iw:.2f}, IWAE (k={cfg.iwae_k}) {iwae:.2f}"
)
lesson.savefig(plot_curves({"MLP VAE": mlp_curve}, xlabel="epoch", ylabel="validation loss"), "mlp_curve")
if full and name == "fashion_mnist":
    lesson.record("mlp_vae_test_loss", mlp_test, min=ANCHOR_TEST_LOSS - 2, max=ANCHOR_TEST_LOSS + 2)
    lesson.record("conv_vae_test_loss", conv_test, max=ANCHOR_TEST_LOSS - 3)
if full:  # quick mode gives the conv VAE seconds, not minutes
    lesson.record("mlp_minus_conv_test_loss", mlp_test - conv_test, min=3)
lesson.record("elbo_minus_iwae", elbo_iw - iwae, min=0.5 if full else 0.1)

# %% [markdown]
# ## What you measured
#
# - the reparameterized gradient equals the gradient of the expectation, at a fraction of the
#   score-function estimator's variance; the closed-form KL equals its Monte-Carlo estimate;
# - pytorch/examples' VAE reproduced near its anchor, and a conv VAE that beats it in minutes;
# - the IWAE bound below the ELBO on the same test images;
# - beta trades rate for distortion, and a large beta collapses latent dimensions to the prior.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub below (its docstring says what to return), then run the last cell or
# `dlkit check advanced/02` in a terminal. `torch.distributions` and autograd are the checks' oracles.

# %% tags=["exercise"]
import torch


def sample_gaussian(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Return the reparameterized sample of N(mu, exp(logvar)) for the given noise eps (all (B, D)).

    logvar is log sigma^2, so sigma = exp(logvar / 2). Gradients must reach mu and logvar through the
    sample (the check backpropagates through it): no .detach(), no torch.normal.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def kl_normal(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor,
              logvar_p: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Return KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) per row, summed over the last dim: (B,).

    Per dimension: 1/2 (sigma_q^2 / sigma_p^2 + (mu_q - mu_p)^2 / sigma_p^2 - 1 - log(sigma_q^2 / sigma_p^2)).
    With mu_p = logvar_p = 0 it is the lesson's `kl_divergence` (a learned prior needs this general form).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import math

import torch


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """Return log (1/K sum_k exp(log_w[k])) for log-weights log_w (K, B): the IWAE bound per image, (B,).

    log_w[k] = log p(x, z_k) - log q(z_k | x) is about -250 for an image: exp underflows to 0 in float32.
    Subtract the max before exp (as torch.logsumexp does), then take log K off.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
