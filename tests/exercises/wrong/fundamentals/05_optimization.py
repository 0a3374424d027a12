"""Plausible wrong answers to fundamentals/05's exercises: each must make its check fail."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def sgd_dampened(params, velocities, lr, momentum, weight_decay):
    for p, v in zip(params, velocities, strict=True):
        v.mul_(momentum).add_((1 - momentum) * (p.grad + weight_decay * p))  # an average: 10x smaller steps
        p.sub_(lr * v)


@torch.no_grad()
def sgd_decoupled_decay(params, velocities, lr, momentum, weight_decay):
    for p, v in zip(params, velocities, strict=True):
        v.mul_(momentum).add_(p.grad)
        p.sub_(lr * v + lr * weight_decay * p)  # decay outside the velocity: not what SGD does


def sgd_rebinds(params, velocities, lr, momentum, weight_decay):
    with torch.no_grad():
        for p, v in zip(params, velocities, strict=True):
            v.mul_(momentum).add_(p.grad + weight_decay * p)
            p = p - lr * v  # a new tensor; the model's parameter is untouched  # noqa: PLW2901


@torch.no_grad()
def adamw_no_bias_correction(params, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay):
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs, strict=True):
        p.mul_(1 - lr * weight_decay)
        m.mul_(betas[0]).add_((1 - betas[0]) * p.grad)
        v.mul_(betas[1]).add_((1 - betas[1]) * p.grad**2)
        p.sub_(lr * m / (v.sqrt() + eps))  # m and v are still biased towards their zero start


@torch.no_grad()
def adamw_eps_inside_sqrt(params, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay):
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs, strict=True):
        p.mul_(1 - lr * weight_decay)
        m.mul_(betas[0]).add_((1 - betas[0]) * p.grad)
        v.mul_(betas[1]).add_((1 - betas[1]) * p.grad**2)
        m_hat, v_hat = m / (1 - betas[0] ** step), v / (1 - betas[1] ** step)
        p.sub_(lr * m_hat / (v_hat + eps).sqrt())


@torch.no_grad()
def adam_l2_decay(params, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay):
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs, strict=True):
        grad = p.grad + weight_decay * p  # Adam's L2 decay, rescaled per weight: what AdamW avoids
        m.mul_(betas[0]).add_((1 - betas[0]) * grad)
        v.mul_(betas[1]).add_((1 - betas[1]) * grad**2)
        m_hat, v_hat = m / (1 - betas[0] ** step), v / (1 - betas[1] ** step)
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def warmup_from_zero(step, total_steps, warmup_steps, peak_lr, min_lr=0.0):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps  # step 0 gets lr 0: a wasted step
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_over_all_steps(step, total_steps, warmup_steps, peak_lr, min_lr=0.0):
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = step / total_steps  # the cosine has already begun when warmup ends
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_ignores_min_lr(step, total_steps, warmup_steps, peak_lr, min_lr=0.0):
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))  # ends at 0, not min_lr


WRONG = {
    "sgd_momentum_step": [sgd_dampened, sgd_decoupled_decay, sgd_rebinds],
    "adamw_step": [adamw_no_bias_correction, adamw_eps_inside_sqrt, adam_l2_decay],
    "warmup_cosine_lr": [warmup_from_zero, cosine_over_all_steps, cosine_ignores_min_lr],
}
