"""Reference solutions for advanced/03's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def generator_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-d_fake).mean()  # -log sigmoid(d) = log(1 + e^-d), stable for any logit


def discriminator_step(G: nn.Module, D: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor,
                       z: torch.Tensor, smooth: float = 0.9) -> float:  # fmt: skip
    fake = G(z).detach()  # D's step must not reach G
    d_real, d_fake = D(real), D(fake)
    loss = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, smooth)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss.item()


def gradient_penalty(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)  # create_graph: D learns from it
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
