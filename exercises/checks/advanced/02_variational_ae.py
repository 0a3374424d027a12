"""Checks for advanced/02 (VAEs): autograd, `torch.distributions` and `torch.logsumexp` are the oracles."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from dlkit.exercises import expect, expect_tensor


def check_sample_gaussian(sample_gaussian) -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(4, 3, generator=g, dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar.detach())
    z = sample_gaussian(mu, logvar, eps)
    expect(isinstance(z, torch.Tensor), f"sample_gaussian should return a tensor, got {type(z).__name__}")
    variance = "the scale is exp(logvar), the variance: sigma = exp(logvar / 2) = exp(0.5 * logvar)"
    expect(z.shape != mu.shape or not torch.allclose(z.detach(), mu.detach() + sigma**2 * eps), variance)
    expect_tensor(
        z,
        mu.detach() + sigma * eps,
        "sample_gaussian(mu, logvar, eps)",
        reference="mu + sigma * eps, with the eps given",
    )
    expect(
        z.requires_grad,
        "the sample carries no gradient: build it from mu and logvar (no .detach(), "
        "no torch.normal), so that the loss can train the encoder",
    )
    weights = torch.randn(4, 3, generator=g, dtype=torch.float64)
    (z * weights).sum().backward()
    expect(mu.grad is not None and logvar.grad is not None, "no gradient reached mu or logvar")
    expect_tensor(mu.grad, weights, "the gradient with respect to mu", reference="dz/dmu = 1")
    expect_tensor(
        logvar.grad,
        weights * 0.5 * sigma * eps,
        "the gradient with respect to logvar",
        reference="dz/dlogvar = sigma * eps / 2",
    )


def check_kl_normal(kl_normal) -> None:
    g = torch.Generator().manual_seed(1)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4))
    q, p = Normal(mu_q, torch.exp(0.5 * logvar_q)), Normal(mu_p, torch.exp(0.5 * logvar_p))
    expected = kl_divergence(q, p).sum(-1)
    got = kl_normal(mu_q, logvar_q, mu_p, logvar_p)
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        mean = "that is the mean over the latent dimensions: the KL of independent dimensions is their sum"
        expect(not torch.allclose(got, kl_divergence(q, p).mean(-1)), mean)
    expect_tensor(
        got,
        expected,
        "kl_normal(mu_q, logvar_q, mu_p, logvar_p)",
        reference="torch.distributions.kl_divergence, summed over the last dimension",
    )
    zeros = torch.zeros(6, 5, dtype=torch.float64)
    expect_tensor(
        kl_normal(mu_q, logvar_q, zeros, zeros),
        kl_divergence(q, Normal(0.0, 1.0)).sum(-1),
        "kl_normal against the prior N(0, I)",
        reference="the lesson's closed form",
    )


def check_iwae_bound(iwae_bound) -> None:
    g = torch.Generator().manual_seed(2)
    log_w = torch.randn(16, 5, generator=g, dtype=torch.float64) * 3 - 2  # (K, B)
    expected = torch.logsumexp(log_w, 0) - math.log(16)
    got = iwae_bound(log_w)
    if isinstance(got, torch.Tensor) and got.shape == (5,):
        elbo = "that is the mean of the log-weights (the ELBO): the bound is the log of the mean weight"
        expect(not torch.allclose(got, log_w.mean(0)), elbo)
        expect(
            not torch.allclose(got, torch.logsumexp(log_w, 0)),
            "off by log K: the mean of the weights is their sum divided by K",
        )
    expect_tensor(
        got,
        expected,
        "iwae_bound(log_w) for log_w of shape (K=16, B=5)",
        reference="logsumexp over K minus log K",
    )
    log_w = torch.tensor([[-250.0, -300.0], [-251.0, -302.0], [-249.0, -299.0]])  # float32: exp(-250) is 0
    expect_tensor(
        iwae_bound(log_w),
        torch.logsumexp(log_w.double(), 0) - math.log(3),
        "iwae_bound for float32 log-weights near -250 (an image's log-likelihood)",
        reference="logsumexp: subtract the max before exp, else exp underflows to 0",
    )
