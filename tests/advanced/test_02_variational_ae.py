"""Advanced 02 (VAEs) in quick mode, and its from-scratch pieces in float64: the reparameterized sample and
its gradients, the KL term against torch.distributions, the loss against dlkit's (pytorch/examples')."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import ROOT, load_definitions, outcome, run_lesson
from torch.distributions import Normal, kl_divergence

from dlkit.generative import vae_loss
from dlkit.lesson import outcome_problems

LESSON = "advanced/02_variational_ae.py"


@pytest.fixture(scope="module")
def lesson():
    return load_definitions(ROOT / LESSON)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("adv02")
    data = run_lesson(LESSON, tmp_path=tmp)
    data["run_dir"] = tmp / "runs" / "advanced" / "02_variational_ae"
    return data


def test_quick_run_passes_with_ranges_that_can_fail(result):
    assert result["quick"] and result["finished"]
    assert all(o["passed"] for o in result["outcomes"].values()), result["outcomes"]
    assert outcome_problems(result) == []
    figures = {Path(f).name for f in result["figures"]}
    assert {"beta_vae.png", "latent_map.png", "interpolation.png", "samples.png"} <= figures


def test_the_checks_of_the_trick_and_the_kl(result):
    assert outcome(result, "reparam_grad_rel_error") < 0.01
    assert outcome(result, "score_vs_reparam_variance_ratio") > 5
    assert outcome(result, "kl_mc_rel_error") < 0.01


def test_beta_and_bounds(result):
    assert outcome(result, "rate_low_vs_high_beta_ratio") > 2  # a larger beta sends less through z
    assert outcome(result, "elbo_minus_iwae") > 0  # the importance-weighted bound is tighter
    assert outcome(result, "latent2_knn_acc") > 0.4


def test_the_checkpoint_lesson_03_reads(result):
    state = torch.load(result["run_dir"] / "conv_vae.pt", weights_only=True)
    assert state["config"]["data"] in ("fashion_mnist", "digits") and state["config"]["latent_dim"] == 20


def test_reparameterize_samples_the_gaussian_and_its_gradients(lesson):
    torch.manual_seed(0)
    mu = torch.tensor([0.5, -2.0], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0)], dtype=torch.float64, requires_grad=True)
    z = lesson.reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2))
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.0], dtype=torch.float64), atol=0.02)
    z.sum().backward()  # dz/dmu = 1, dz/dlogvar = sigma * eps / 2 = (z - mu) / 2
    assert torch.equal(mu.grad, torch.full((2,), 200_000.0, dtype=torch.float64))
    assert torch.allclose(logvar.grad, ((z - mu) / 2).sum(0).detach(), rtol=1e-12)


def test_kl_and_log_density_match_torch_distributions(lesson):
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(7, 5, generator=g, dtype=torch.float64),
        torch.randn(7, 5, generator=g, dtype=torch.float64),
    )
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(lesson.kl_divergence(mu, logvar), kl_divergence(q, p).sum(-1), rtol=1e-12)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(lesson.log_normal(z, mu, logvar), q.log_prob(z).sum(-1), rtol=1e-12)


def test_the_lessons_loss_is_dlkits(lesson):
    g = torch.Generator().manual_seed(1)
    logits, x = (
        torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64),
        torch.rand(6, 1, 8, 8, generator=g, dtype=torch.float64),
    )
    mu, logvar = (
        torch.randn(6, 3, generator=g, dtype=torch.float64),
        torch.randn(6, 3, generator=g, dtype=torch.float64),
    )
    assert lesson.vae_loss(logits, x, mu, logvar).item() == pytest.approx(
        vae_loss(logits, x, mu, logvar).item(), rel=1e-6
    )
    kl = lesson.kl_divergence(mu, logvar).sum().item()
    gap = lesson.vae_loss(logits, x, mu, logvar, beta=4.0) - lesson.vae_loss(logits, x, mu, logvar)
    assert gap.item() == pytest.approx(3 * kl, rel=1e-5)  # beta weighs the KL term only


@pytest.mark.slow
def test_quick_mode_offline_uses_digits(tmp_path):
    data = run_lesson(LESSON, "--quick", tmp_path=tmp_path, no_data=True)
    assert "load_digits" in data["data"]["images"]
    assert all(o["passed"] for o in data["outcomes"].values()), data["outcomes"]
