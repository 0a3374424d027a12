"""Plausible wrong answers to advanced/03's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_loss_saturating(d_fake):
    return -F.softplus(d_fake).mean()  # minimise log(1 - D(G(z))): the original, saturating loss


def generator_loss_naive(d_fake):
    return -torch.log(torch.sigmoid(d_fake)).mean()  # -inf inside: sigmoid(-200) is 0 in float32


def generator_loss_sum(d_fake):
    return F.softplus(-d_fake).sum()


def discriminator_step_no_detach(G, D, opt_d, real, z, smooth=0.9):
    fake = G(z)  # D's loss flows back into G
    d_real, d_fake = D(real), D(fake)
    loss = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, smooth)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss.item()


def discriminator_step_no_zero_grad(G, D, opt_d, real, z, smooth=0.9):
    fake = G(z).detach()
    d_real, d_fake = D(real), D(fake)
    loss = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, smooth)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip
    loss.backward()  # adds to the gradients left from G's step
    opt_d.step()
    return loss.item()


def discriminator_step_no_smoothing(G, D, opt_d, real, z, smooth=0.9):
    fake = G(z).detach()
    d_real, d_fake = D(real), D(fake)
    loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
        F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))  # fmt: skip
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return loss.item()


def gradient_penalty_no_create_graph(D, real, fake, alpha):
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat)  # a constant: D gets no gradient from it
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def gradient_penalty_batch_norm(D, real, fake, alpha):
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm() - 1).pow(2)  # one norm over the whole batch


def gradient_penalty_channel_norm(D, real, fake, alpha):
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm(dim=1) - 1).pow(2).mean()  # the norm over channels only, not the whole image


WRONG = {
    "generator_loss": [generator_loss_saturating, generator_loss_naive, generator_loss_sum],
    "discriminator_step": [
        discriminator_step_no_detach,
        discriminator_step_no_zero_grad,
        discriminator_step_no_smoothing,
    ],  # fmt: skip
    "gradient_penalty": [
        gradient_penalty_no_create_graph,
        gradient_penalty_batch_norm,
        gradient_penalty_channel_norm,
    ],  # fmt: skip
}
