"""Plausible wrong answers to nlp/05's exercises: each must make its check fail."""

from __future__ import annotations

import torch


def mean_pool_with_padding(hidden, attention_mask):
    return hidden.mean(dim=1)  # the padding positions are averaged in


def mean_pool_divides_by_length(hidden, attention_mask):
    mask = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * mask).sum(dim=1) / hidden.shape[1]


def mean_pool_nan_when_empty(hidden, attention_mask):
    mask = attention_mask.to(hidden.dtype)[..., None]
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1)  # 0 / 0 for an empty text


def freeze_without_eval(model):
    model.encoder.requires_grad_(False)  # dropout still on: the features change at every pass
    return list(model.head.parameters())


def freeze_by_eval_only(model):
    model.eval()  # no gradients stopped: an optimizer over all parameters moves the encoder
    return list(model.parameters())


def freeze_everything(model):
    model.requires_grad_(False)
    model.encoder.eval()
    return list(model.head.parameters())  # the head cannot learn either


def schedule_starts_at_one_step(optimizer, warmup_steps, total_steps):
    def factor(s):  # the lesson's (s + 1) / warmup: off by one from transformers'
        return min(
            (s + 1) / max(1, warmup_steps), max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def schedule_goes_negative(optimizer, warmup_steps, total_steps):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: s / warmup_steps if s < warmup_steps else (total_steps - s) / (total_steps - warmup_steps),
    )


def schedule_decays_from_zero(optimizer, warmup_steps, total_steps):
    def factor(s):  # decays over all the steps, not from the end of warmup
        return s / warmup_steps if s < warmup_steps else max(0.0, (total_steps - s) / total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


WRONG = {
    "mean_pool": [mean_pool_with_padding, mean_pool_divides_by_length, mean_pool_nan_when_empty],
    "freeze_encoder": [freeze_without_eval, freeze_by_eval_only, freeze_everything],
    "warmup_linear_schedule": [
        schedule_starts_at_one_step,
        schedule_goes_negative,
        schedule_decays_from_zero,
    ],
}
