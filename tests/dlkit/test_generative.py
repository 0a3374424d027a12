"""dlkit.generative: Frechet distance against closed forms and scipy, precision/recall on hand-made
sets, the VAE loss against pytorch/examples' formula, the importance-weighted bound where it is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from dlkit.generative import (
    MLPVAE,
    ConvVAE,
    class_shares,
    embed,
    frechet_distance,
    gaussian_stats,
    iwae_nll,
    load_or_train_feature_net,
    precision_recall,
    sample_quality,
    sqrtm_psd,
    train_vae,
    vae_loss,
    vae_test_loss,
)


def random_spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The formula as pytorch-fid writes it, with scipy's general (non-symmetric) sqrtm."""
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy())
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(s1.numpy()) + np.trace(s2.numpy()) - 2 * np.trace(covmean))


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = (
        torch.randn(6, generator=g, dtype=torch.float64),
        torch.randn(6, generator=g, dtype=torch.float64),
    )
    a, b = (
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1,
        torch.rand(6, generator=g, dtype=torch.float64) + 0.1,
    )
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()  # sum of 1-D W2^2
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(
        expected.item(), rel=1e-12
    )


def test_frechet_distance_of_a_rotated_gaussian_is_zero_only_for_the_mean_shift():
    s = random_spd(5, 1)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))  # an orthogonal matrix
    shift = torch.arange(5, dtype=torch.float64)
    assert frechet_distance(torch.zeros(5), s, shift, s) == pytest.approx((shift**2).sum().item(), rel=1e-10)
    # tr(S) = tr(Q S Q^T), so the distance comes from the shape alone: positive unless Q S Q^T = S
    assert frechet_distance(torch.zeros(5), s, torch.zeros(5), q @ s @ q.T) > 1e-3


@pytest.mark.parametrize("d", [2, 10, 64])
def test_frechet_distance_matches_scipy_sqrtm(d):
    mu1, mu2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    s1, s2 = random_spd(d, 2), random_spd(d, 3)
    ours, theirs = frechet_distance(mu1, s1, mu2, s2), scipy_frechet(mu1, s1, mu2, s2)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ours, rel=1e-9)  # symmetric
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_gaussian_stats_and_sqrtm_match_numpy():
    f = torch.randn(200, 7, dtype=torch.float64) @ torch.randn(7, 7, dtype=torch.float64)
    mu, sigma = gaussian_stats(f)
    np.testing.assert_allclose(mu.numpy(), f.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(f.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)
    root = sqrtm_psd(sigma)
    np.testing.assert_allclose((root @ root).numpy(), sigma.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(root.numpy(), scipy.linalg.sqrtm(sigma.numpy()).real, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 3))


def test_frechet_distance_of_samples_converges_to_the_gaussians_distance():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(20000, 3, generator=g), 1.0 + 2.0 * torch.randn(20000, 3, generator=g)
    expected = 3 * 1.0**2 + 3 * (1 - 2) ** 2  # means 0 vs 1, stds 1 vs 2 in each of 3 dimensions: 6
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) == pytest.approx(expected, rel=0.05)


def test_precision_and_recall_on_hand_made_sets():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0], [13.0]])
    assert precision_recall(real, real.clone(), k=1) == (1.0, 1.0)
    # Samples from one of the two modes only: all realistic, half the data covered (mode collapse).
    collapsed = torch.tensor([[0.5], [1.5], [2.5], [1.0]])
    precision, recall = precision_recall(real, collapsed, k=1)
    assert precision == 1.0 and recall == 0.5
    # Samples far from the data, close to each other: none realistic, and their balls cover no data.
    far = torch.tensor([[100.0], [101.0], [102.0]])
    assert precision_recall(real, far, k=1) == (0.0, 0.0)


def test_precision_recall_chunks_do_not_change_the_answer():
    real, fake = torch.randn(300, 4), torch.randn(200, 4) + 0.5
    assert precision_recall(real, fake, k=3, chunk=1000) == precision_recall(real, fake, k=3, chunk=17)


def test_class_shares():
    shares = class_shares(torch.tensor([0, 0, 1, 3]), 5)
    assert shares.tolist() == [0.5, 0.25, 0.0, 0.25, 0.0]


def test_vae_loss_is_pytorch_examples_loss():
    """BCE on sigmoid outputs, summed, plus the analytic KL, as pytorch/examples' vae/main.py writes it."""
    g = torch.Generator().manual_seed(0)
    logits, x = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64), torch.rand(4, 1, 8, 8, generator=g)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    bce = F.binary_cross_entropy(torch.sigmoid(logits).view(-1, 64), x.view(-1, 64).double(), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    assert vae_loss(logits, x, mu, logvar).item() == pytest.approx((bce + kld).item(), rel=1e-6)
    q = torch.distributions.Normal(mu.double(), (0.5 * logvar.double()).exp())
    p = torch.distributions.Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    assert kld.item() == pytest.approx(torch.distributions.kl_divergence(q, p).sum().item(), rel=1e-6)


def test_mlp_vae_is_the_pytorch_examples_model_and_conv_vae_takes_both_sizes():
    assert sum(p.numel() for p in MLPVAE().parameters()) == 652_824  # 784-400-(20,20)-400-784
    for side in (8, 28, 32):
        model = ConvVAE(side, latent_dim=5, width=4, hidden=16)
        logits, mu, logvar = model(torch.rand(3, 1, side, side))
        assert logits.shape == (3, 1, side, side) and mu.shape == logvar.shape == (3, 5)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvVAE(30)


class ConstantDecoder(nn.Module):
    """q(z|x) = N(mu, exp(logvar)) given, p(x|z) = Bernoulli(sigmoid(c)) whatever z: log p(x) is exact."""

    def __init__(self, mu: float, logvar: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.full((1, 1, 4, 4), 0.3))
        self.mu, self.logvar = mu, logvar

    def encode(self, x):
        return torch.full((len(x), 2), self.mu), torch.full((len(x), 2), self.logvar)

    def decode(self, z):
        return self.c.expand(len(z), 1, 4, 4)


def test_iwae_is_exact_when_the_posterior_is_the_prior_and_a_bound_otherwise():
    x = torch.rand(1000, 1, 4, 4)
    exact = F.binary_cross_entropy_with_logits(torch.full_like(x, 0.3), x, reduction="sum").item() / len(x)
    assert iwae_nll(ConstantDecoder(0.0, 0.0), x, k=5) == pytest.approx(exact, rel=1e-6)
    off = ConstantDecoder(1.0, -1.0)  # q is not p(z|x) = p(z): every bound is above -log p(x)
    k1, k64, k4096 = (iwae_nll(off, x, k=k, seed=1) for k in (1, 64, 4096))
    assert k1 > k64 > k4096 > exact - 1e-6
    assert k4096 - exact < 0.1 * (k1 - exact)  # and it tightens towards -log p(x) as k grows


def test_train_vae_lowers_the_test_loss_and_repeats_under_a_seed():
    x = torch.rand(256, 1, 8, 8).round()  # binary 8x8 "images"
    x[:, :, 2:6, 2:6] = 1.0  # with a shared square to learn
    torch.manual_seed(0)
    model = ConvVAE(8, latent_dim=4, width=8, hidden=32)
    before = vae_test_loss(model, x)
    info = train_vae(model, x, device=torch.device("cpu"), num_epochs=5, lr=3e-3, batch_size=32, log=None)
    assert info["epochs"] == 5 and info["steps"] == 5 * 8
    floor = 48 * math.log(2)  # 48 coin-flip pixels cost log 2 nats each; the 16 of the square nothing
    assert before > floor + 8 and vae_test_loss(model, x) < floor + 3
    assert vae_test_loss(model, x, seed=3) == vae_test_loss(model, x, seed=3)
    budget = train_vae(ConvVAE(8, 4, 8, 32), x, device=torch.device("cpu"), time_budget=0.3, log=None)
    assert budget["seconds"] < 2.0 and budget["steps"] >= 1


def test_train_vae_warms_the_learning_rate_up_then_follows_the_cosine(monkeypatch):
    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    x = torch.rand(64, 1, 8, 8).round()
    cpu = torch.device("cpu")
    train_vae(ConvVAE(8, 4, 8, 32), x, device=cpu, num_epochs=5, lr=1e-2, batch_size=8, cosine=True,
              warmup_steps=4, log=None)  # fmt: skip
    total = 5 * 8
    cosine = [0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)]
    expected = [1e-2 * min(1.0, (s + 1) / 4) * c for s, c in enumerate(cosine)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(2.5e-3 * cosine[0]) and max(seen) == pytest.approx(1e-2 * cosine[3])
    seen.clear()  # without the cosine: the ramp, then the peak
    train_vae(ConvVAE(8, 4, 8, 32), x, device=cpu, num_epochs=1, lr=1e-2, batch_size=8, warmup_steps=4,
              log=None)  # fmt: skip
    assert seen == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2])


def test_feature_net_is_trained_once_then_reloaded(tmp_path):
    from dlkit.data import load_dataset

    digits = load_dataset("digits", "train")
    path, cpu = tmp_path / "features.pt", torch.device("cpu")
    net, info = load_or_train_feature_net(
        digits.x, digits.y, path=path, tag="digits", device=cpu, num_epochs=4
    )
    assert info["trained_now"] and path.is_file()
    test = load_dataset("digits", "test")
    feats, preds = embed(net, test.x)
    assert feats.shape == (len(test), 64)
    assert (preds == test.y).float().mean() > 0.85  # a classifier worth measuring with
    again, info2 = load_or_train_feature_net(
        digits.x, digits.y, path=path, tag="digits", device=cpu, num_epochs=4
    )
    assert not info2["trained_now"] and torch.equal(embed(again, test.x)[0], feats)
    _, info3 = load_or_train_feature_net(digits.x, digits.y, path=path, tag="other", device=cpu, num_epochs=1)
    assert info3["trained_now"]  # other data: not reused

    real_feats, _ = embed(net, digits.x)
    real = sample_quality(net, real_feats, test.x)
    noise = sample_quality(net, real_feats, torch.rand(300, 1, 8, 8))
    assert real.frechet < noise.frechet and real.precision > noise.precision
    assert math.isclose(float(real.shares.sum()), 1.0) and real.shares.min() > 0.05
