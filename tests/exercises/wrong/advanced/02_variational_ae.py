"""Plausible wrong answers to advanced/02's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def sample_variance_scale(mu, logvar, eps):
    return mu + torch.exp(logvar) * eps  # logvar read as log sigma: the scale is the variance


def sample_not_reparameterized(mu, logvar, eps):
    return torch.normal(mu, torch.exp(0.5 * logvar))  # a fresh sample: no pathwise gradient


def sample_detached(mu, logvar, eps):
    return (mu + torch.exp(0.5 * logvar) * eps).detach()


def kl_std_confusion(mu_q, logvar_q, mu_p, logvar_p):
    q = torch.distributions.Normal(mu_q, logvar_q.exp())  # exp(logvar) is the variance, not sigma
    p = torch.distributions.Normal(mu_p, logvar_p.exp())
    return torch.distributions.kl_divergence(q, p).sum(-1)


def kl_mean_over_dims(mu_q, logvar_q, mu_p, logvar_p):
    ratio = torch.exp(logvar_q - logvar_p)
    per_dim = 0.5 * (ratio + (mu_q - mu_p).pow(2) / logvar_p.exp() - 1 - (logvar_q - logvar_p))
    return per_dim.mean(dim=-1)


def kl_prior_only(mu_q, logvar_q, mu_p, logvar_p):
    return -0.5 * torch.sum(1 + logvar_q - mu_q.pow(2) - logvar_q.exp(), dim=-1)  # ignores p


def iwae_elbo(log_w):
    return log_w.mean(dim=0)


def iwae_naive(log_w):
    return torch.log(torch.exp(log_w).mean(dim=0))  # -inf once exp underflows


def iwae_no_log_k(log_w):
    return torch.logsumexp(log_w, dim=0)


WRONG = {
    "sample_gaussian": [sample_variance_scale, sample_not_reparameterized, sample_detached],
    "kl_normal": [kl_std_confusion, kl_mean_over_dims, kl_prior_only],
    "iwae_bound": [iwae_elbo, iwae_naive, iwae_no_log_k],
}
