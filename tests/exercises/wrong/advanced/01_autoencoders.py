"""Plausible wrong answers to advanced/01's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masking_noise_dropout(x, p):
    return F.dropout(x, p)  # drops p of the pixels but scales the rest by 1 / (1 - p)


def masking_noise_keeps_p(x, p):
    return x * (torch.rand_like(x) < p)  # keeps a share p instead of dropping it


def masking_noise_in_place(x, p):
    x[torch.rand_like(x) < p] = 0  # overwrites the clean target
    return x


def denoising_step_noisy_target(model, optimizer, x, corrupt):
    noisy = corrupt(x)
    loss = F.mse_loss(model(noisy), noisy)  # learns to copy the noise
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def denoising_step_clean_input(model, optimizer, x, corrupt):
    loss = F.mse_loss(model(x), x)  # a plain autoencoder step
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def denoising_step_no_zero_grad(model, optimizer, x, corrupt):
    loss = F.mse_loss(model(corrupt(x)), x)
    loss.backward()
    optimizer.step()
    return loss.item()


def scores_train_mode(model, x):
    with torch.no_grad():
        return (model(x) - x).flatten(1).pow(2).mean(dim=1)  # dropout still on


def scores_one_number(model, x):
    model.eval()
    with torch.no_grad():
        return F.mse_loss(model(x), x)  # the mean over every image: no score per image


def scores_with_grad(model, x):
    model.eval()
    return (model(x) - x).flatten(1).pow(2).mean(dim=1)


WRONG = {
    "masking_noise": [masking_noise_dropout, masking_noise_keeps_p, masking_noise_in_place],
    "denoising_step": [denoising_step_noisy_target, denoising_step_clean_input, denoising_step_no_zero_grad],
    "reconstruction_scores": [scores_train_mode, scores_one_number, scores_with_grad],
}
