"""Reference solutions for fundamentals/05's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def sgd_momentum_step(
    params: list[torch.Tensor],
    velocities: list[torch.Tensor],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    for p, v in zip(params, velocities, strict=True):
        grad = p.grad + weight_decay * p  # L2 weight decay goes through the gradient
        v.mul_(momentum).add_(grad)  # v = momentum * v + grad
        p.sub_(lr * v)


@torch.no_grad()
def adamw_step(
    params: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    beta1, beta2 = betas
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs, strict=True):
        p.mul_(1 - lr * weight_decay)  # decoupled: on the weights, not through the gradient
        m.mul_(beta1).add_((1 - beta1) * p.grad)
        v.mul_(beta2).add_((1 - beta2) * p.grad**2)
        m_hat = m / (1 - beta1**step)  # the averages start at 0: undo their bias towards it
        v_hat = v / (1 - beta2**step)
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def warmup_cosine_lr(
    step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0
) -> float:
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
