"""Generative models measured: VAEs on small images, and how good samples are, offline.

- ``MLPVAE`` is pytorch/examples' ``vae/main.py`` model (784-400-20); ``ConvVAE`` a small convolutional
  one for any square image side divisible by 4 (28x28 Fashion-MNIST, 8x8 digits). Both return
  ``(logits, mu, logvar)`` and are trained with ``vae_loss``: binary cross-entropy summed over the
  pixels (in [0, 1]) plus the KL term, per image, as in pytorch/examples, so the numbers compare.
- Sample quality without Inception weights (they download at run time): the Frechet distance
  (Heusel et al. 2017) between Gaussians fitted to the features of the course's CNN trained here
  (``make_feature_net``); precision and recall of samples in that feature space (Kynkaanniemi et al. 2019);
  the share of each class among the samples, which shows mode collapse.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.device import autocast, resolve_amp_dtype
from dlkit.nets import make_cnn
from dlkit.progress import progress

__all__ = [
    "ConvVAE",
    "MLPVAE",
    "SampleQuality",
    "class_shares",
    "embed",
    "frechet_distance",
    "gaussian_stats",
    "iwae_nll",
    "load_or_train_feature_net",
    "make_feature_net",
    "precision_recall",
    "reparameterize",
    "sample_quality",
    "sqrtm_psd",
    "train_vae",
    "vae_loss",
    "vae_test_loss",
]


# --- VAEs ------------------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I): a sample whose gradient flows to mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """pytorch/examples' VAE loss, summed over the batch: BCE over all pixels + KL(q(z|x) || N(0, I)).

    ``logits`` are the decoder's pre-sigmoid outputs (BCE with logits is the same number, computed
    stably); divide by the batch size for the loss per image. Computed in float32 under autocast.
    """
    bce = F.binary_cross_entropy_with_logits(logits.float().flatten(1), x.float().flatten(1), reduction="sum")
    mu, logvar = mu.float(), logvar.float()
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kl


class MLPVAE(nn.Module):
    """pytorch/examples' VAE: 784-400-(20, 20) encoder, 20-400-784 decoder, for any image size."""

    def __init__(
        self, image_shape: tuple[int, int, int] = (1, 28, 28), hidden: int = 400, latent_dim: int = 20
    ):
        super().__init__()
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        num_pixels = math.prod(image_shape)
        self.fc1, self.fc3 = nn.Linear(num_pixels, hidden), nn.Linear(latent_dim, hidden)
        self.fc21, self.fc22 = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.fc4 = nn.Linear(hidden, num_pixels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.flatten(1)))  # (B, hidden)
        return self.fc21(h), self.fc22(h)  # mu, logvar: (B, latent_dim) each

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits (B, C, H, W); ``torch.sigmoid`` of them is the mean image."""
        return self.fc4(F.relu(self.fc3(z))).view(-1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


class ConvVAE(nn.Module):
    """Two stride-2 convolutions down (side -> side/4), a dense bottleneck, two transposed ones up."""

    def __init__(self, side: int = 28, latent_dim: int = 20, width: int = 16, hidden: int = 512) -> None:
        super().__init__()
        if side % 4:
            raise ValueError(f"ConvVAE needs an image side divisible by 4, got {side}")
        self.image_shape, self.latent_dim = (1, side, side), latent_dim
        s, w = side // 4, width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1), nn.ReLU(),  # (B, w, side/2, side/2)
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.ReLU(),  # (B, 2w, side/4, side/4)
            nn.Flatten(), nn.Linear(2 * w * s * s, hidden), nn.ReLU(),
        )  # fmt: skip
        self.to_mu, self.to_logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * w * s * s), nn.ReLU(),
            nn.Unflatten(1, (2 * w, s, s)),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.ReLU(),  # (B, w, side/2, side/2)
            nn.ConvTranspose2d(w, 1, 4, 2, 1),  # (B, 1, side, side) logits
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar)), mu, logvar


VAE = MLPVAE | ConvVAE  # what the evaluations below take: encode() and decode()


@torch.no_grad()
def vae_test_loss(model: VAE, x: torch.Tensor, *, batch_size: int = 1000, seed: int = 0) -> float:
    """Mean ``vae_loss`` per image over ``x`` (float32, one sampled z per image, as pytorch/examples'
    ``test()`` does); the z draws come from a generator seeded with ``seed``, so it repeats."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        mu, logvar = model.encode(xb)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, device=device)
        total += vae_loss(model.decode(z), xb, mu, logvar).item()
    return total / len(x)


@torch.no_grad()
def iwae_nll(model: VAE, x: torch.Tensor, *, k: int = 64, batch_size: int = 100, seed: int = 0) -> float:
    """-log p(x) bounded with k importance samples (Burda et al. 2016), mean nats per image.

    log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x): k = 1 is the ELBO; the
    bound tightens as k grows, so this is <= the ELBO loss. p(x|z) is the same Bernoulli "BCE" term.
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)  # (B, C, H, W)
        mu, logvar = model.encode(xb)  # (B, D)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k, *mu.shape), generator=gen, device=device)  # (k, B, D)
        z = mu + std * eps
        logits = model.decode(z.flatten(0, 1)).float().flatten(1)  # (k*B, pixels)
        target = xb.flatten(1).repeat(k, 1)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).view(k, -1)
        log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)  # (k, B)
        log_qz = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_w = log_px_z + log_pz - log_qz  # (k, B)
        total += -(torch.logsumexp(log_w, 0) - math.log(k)).sum().item()
    return total / len(x)


def train_vae(
    model: nn.Module,
    x: torch.Tensor,
    *,
    device: torch.device,
    num_epochs: int | None = None,
    time_budget: float | None = None,
    lr: float = 1e-3,
    batch_size: int = 128,
    cosine: bool = False,
    warmup_steps: int = 0,
    amp: bool | None = None,
    log: Callable[[str], None] | None = print,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Train a VAE on images ``x`` with Adam for ``num_epochs`` or ``time_budget`` seconds of training.

    ``cosine=True`` decays the learning rate to 0 along a cosine over the run (over the time budget
    when one is given). ``warmup_steps`` > 0 also ramps it up linearly over the first steps (times
    (step + 1) / warmup_steps): Adam's first steps at a high peak leave the conv VAE worse for good
    (see advanced/README.md). ``amp``: as in ``dlkit.train.fit`` (None: bf16 autocast where it pays); the
    loss is summed in float32. Returns {"epochs", "steps", "seconds", "train_loss"} (loss per image,
    mean over the last epoch). The order of batches draws from torch's global generator. ``clock``
    measures the budget and "seconds": wall time by default; ``time.process_time`` counts this
    process's CPU time instead (with one thread, the wall time of a machine nobody else uses).
    """
    if num_epochs is None and time_budget is None:
        raise ValueError("give num_epochs or time_budget")
    model.to(device).train()
    amp_dtype = resolve_amp_dtype(amp, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    seconds, steps, epoch, loss_sum, seen = 0.0, 0, 0, 0.0, 0
    while (num_epochs is None or epoch < num_epochs) and (time_budget is None or seconds < time_budget):
        epoch, order = epoch + 1, torch.randperm(len(x))
        loss_sum, seen, start = 0.0, 0, clock()
        for i in progress(range(steps_per_epoch), desc=f"VAE epoch {epoch}"):
            elapsed = seconds + clock() - start
            if time_budget is not None and elapsed >= time_budget:
                break
            if cosine or warmup_steps:
                factor = min(1.0, (steps + 1) / warmup_steps) if warmup_steps else 1.0
                if cosine:
                    done = elapsed / time_budget if time_budget else steps / (num_epochs * steps_per_epoch)  # type: ignore[operator]
                    factor *= 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
                for group in optimizer.param_groups:
                    group["lr"] = lr * factor
            xb = x[order[i * batch_size : (i + 1) * batch_size]].to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                logits, mu, logvar = model(xb)
            loss = vae_loss(logits, xb, mu, logvar)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(xb)).backward()
            optimizer.step()
            loss_sum, seen, steps = loss_sum + loss.item(), seen + len(xb), steps + 1
        seconds += clock() - start
        if log is not None and seen:
            log(f"VAE epoch {epoch}: train loss {loss_sum / seen:.2f} per image, {seconds:.0f} s of training")
    return {"epochs": epoch, "steps": steps, "seconds": seconds, "train_loss": loss_sum / max(seen, 1)}


# --- Frechet distance, precision and recall -------------------------------------------------------


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (unbiased, as ``numpy.cov``)."""
    f = features.detach().double()
    if f.dim() != 2 or len(f) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(f.shape)}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, by eigendecomposition
    (tiny negative eigenvalues from rounding are set to 0)."""
    a = (a + a.T) / 2
    values, vectors = torch.linalg.eigh(a)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """The squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2):

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)),

    with tr((s1 s2)^(1/2)) = tr((s1^(1/2) s2 s1^(1/2))^(1/2)): the matrix inside is symmetric PSD,
    so its square root comes from ``eigh``, without the complex parts ``scipy.linalg.sqrtm`` can give.
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross
    return float(value.clamp(min=0))


def _kth_neighbour_radius(f: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of f to its k-th nearest other row."""
    radii = []
    for start in range(0, len(f), chunk):
        d = torch.cdist(f[start : start + chunk], f)  # (chunk, N); the row itself is at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _inside_any_ball(
    points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int
) -> torch.Tensor:
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], centres)  # (chunk, M)
        inside.append((d <= radii).any(dim=1))
    return torch.cat(inside)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, *, k: int = 3, chunk: int = 1000
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` features against ``real``.

    Each set's manifold is the union of balls around its points, each reaching its k-th nearest
    neighbour. Precision: the share of fake points inside the real manifold (are samples realistic?);
    recall: the share of real points inside the fake manifold (is all of the data covered?).
    """
    real, fake = real.detach().float(), fake.detach().float()
    real_radii, fake_radii = _kth_neighbour_radius(real, k, chunk), _kth_neighbour_radius(fake, k, chunk)
    precision = _inside_any_ball(fake, real, real_radii, chunk).float().mean().item()
    recall = _inside_any_ball(real, fake, fake_radii, chunk).float().mean().item()
    return precision, recall


def class_shares(predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The share of each class (num_classes,) among predicted class ids (N,): sums to 1."""
    return torch.bincount(predictions.flatten(), minlength=num_classes).double() / predictions.numel()


# --- The feature classifier -----------------------------------------------------------------------


def make_feature_net(num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64)) -> nn.Sequential:
    """The course's CNN (``dlkit.nets.make_cnn``, as in computer vision lesson 01) with a global max-pool
    head, so it takes any image side >= 8; everything but its last layer maps an image to its
    ``widths[-1]`` features, the space in which samples are compared."""
    return make_cnn(1, num_classes, widths, dropout=0.2)


@torch.no_grad()
def embed(
    net: nn.Sequential, x: torch.Tensor, *, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) and predicted classes (N,) of images x (N, 1, H, W) in [0, 1], in eval mode
    and float32."""
    net.eval()
    device = next(net.parameters()).device
    feats, preds = [], []
    for start in range(0, len(x), batch_size):
        f = net[:-1](x[start : start + batch_size].to(device).float())  # all but the classifier layer
        feats.append(f.cpu())
        preds.append(net[-1](f).argmax(1).cpu())
    return torch.cat(feats), torch.cat(preds)


def load_or_train_feature_net(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    path: str | Path | None,
    tag: str,
    device: torch.device,
    num_epochs: int = 3,
    lr: float = 2e-3,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """The feature classifier (:func:`make_feature_net`) trained on (x, y): from ``path`` when a
    checkpoint made with the same settings is there, else trained now (Adam, one-cycle) and saved
    there. ``tag`` names the data (e.g. "fashion_mnist 60000"): a checkpoint of other data is not
    reused. Returns (net, info)."""
    num_classes = int(y.max()) + 1
    config = {"tag": tag, "shape": list(x.shape), "num_classes": num_classes, "num_epochs": num_epochs,
              "lr": lr, "batch_size": batch_size, "seed": seed}  # fmt: skip
    net = make_feature_net(num_classes).to(device)
    if path is not None and Path(path).is_file():
        state = load_checkpoint(path, restore_rng=False)
        if state.get("config") == config:
            net.load_state_dict(state["model"])
            return net.eval(), {"trained_now": False, **state["info"]}
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = num_epochs * math.ceil(len(x) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    amp_dtype, start = resolve_amp_dtype(None, device), time.perf_counter()
    net.train()
    for epoch in range(num_epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in progress(range(0, len(x), batch_size), desc=f"feature net epoch {epoch + 1}"):
            idx = order[i : i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            with autocast(device, amp_dtype):
                loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    info = {"train_seconds": time.perf_counter() - start}
    if path is not None:
        save_checkpoint(path, model=net, epoch=num_epochs, config=config, info=info)
    return net.eval(), {"trained_now": True, **info}


# --- All of it for one set of samples -------------------------------------------------------------


@dataclass
class SampleQuality:
    """How a set of samples compares with real images in the feature space of the feature net."""

    frechet: float
    precision: float
    recall: float
    shares: torch.Tensor  # (num_classes,) share of each predicted class among the samples

    def row(self) -> dict[str, float]:
        shares = {"min_class_share": float(self.shares.min()), "max_class_share": float(self.shares.max())}
        return {"frechet": self.frechet, "precision": self.precision, "recall": self.recall, **shares}


def sample_quality(
    net: nn.Sequential, real_features: torch.Tensor, samples: torch.Tensor, *, k: int = 3
) -> SampleQuality:
    """Frechet distance, precision/recall (k neighbours) and class shares of ``samples`` (N, 1, H, W)
    in [0, 1], against ``real_features`` (M, D) from ``embed(net, real_images)``."""
    feats, preds = embed(net, samples)
    fd = frechet_distance(*gaussian_stats(real_features), *gaussian_stats(feats))
    precision, recall = precision_recall(real_features, feats, k=k)
    num_classes = int(net[-1].out_features)  # type: ignore[arg-type]
    return SampleQuality(fd, precision, recall, class_shares(preds, num_classes))
