"""airbench94's optimiser and schedule (Keller Jordan, cifar10-airbench), shared by `train` and `fast`.

- :func:`airbench_sgd`: Nesterov SGD whose learning rate and weight decay are given per 1024 examples
  and decoupled from the momentum, with a larger learning rate for the BatchNorm shifts;
- :func:`triangle`: the learning-rate factor per step, rising then falling linearly;
- :data:`RECIPES`: those hyperparameters per model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["RECIPES", "airbench_sgd", "recipe_value", "triangle"]

# Per model, in airbench's decoupled form (see airbench_sgd): learning rate and weight decay per 1024
# examples, and the learning-rate multiplier of BatchNorm parameters. resnet_small's are airbench94's;
# resnet18's: 2/3 of the usual lr 0.1 at batch 128 (momentum 0.9), scaled linearly with the batch, and
# the usual weight decay 5e-4 (neither tuned here).
RECIPES: dict[str, dict[str, float]] = {
    "resnet_small": {"lr": 11.5, "weight_decay": 0.0153, "bias_scaler": 64.0},
    "resnet18": {"lr": 6.0, "weight_decay": 0.003, "bias_scaler": 1.0},
}


def recipe_value(model: str, name: str, given: float | None) -> float:
    """``given``, or the model's recipe value of ``name`` when the flag was left at None."""
    return given if given is not None else RECIPES.get(model, RECIPES["resnet18"])[name]


def triangle(
    total_steps: int, start: float = 0.2, peak: float = 1.0, end: float = 0.07, at: float = 0.23
) -> Callable[[int], float]:
    """airbench's schedule: the lr factor rises linearly from ``start`` to ``peak`` at fraction ``at``
    of ``total_steps``, then falls linearly to ``end``; ``factor(step)``."""

    def factor(step: int) -> float:
        t, top = min(step, total_steps), max(int(at * total_steps), 1)
        if t < top:
            return start + (peak - start) * t / top
        return peak + (end - peak) * (t - top) / max(total_steps - top, 1)

    return factor


def airbench_sgd(
    model: nn.Module, batch_size: int, lr: float, momentum: float, weight_decay: float, bias_scaler: float
) -> torch.optim.SGD:
    """Nesterov SGD with airbench's decoupled hyperparameters, for a loss averaged over the batch.

    ``lr`` and ``weight_decay`` are per 1024 examples and divided by 1 + 1/(1 - momentum), the factor
    by which momentum lengthens steps, so each can be tuned on its own (see Page, "How to train your
    ResNet 5"). BatchNorm shifts learn ``bias_scaler`` times faster but decay at the same rate.
    """
    kilostep = 1 + 1 / (1 - momentum)
    step_lr = lr * batch_size / 1024 / kilostep
    decay = weight_decay * batch_size / 1024 / kilostep  # the fraction of each weight removed per step
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norm_ids = {id(p) for m in norms for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    norm_params = [p for p in trainable if id(p) in norm_ids]
    other_params = [p for p in trainable if id(p) not in norm_ids]
    bias_lr = step_lr * bias_scaler
    groups = [  # the first group's lr is the one the loop logs
        {"params": other_params, "lr": step_lr, "weight_decay": decay / step_lr},
        {"params": norm_params, "lr": bias_lr, "weight_decay": decay / bias_lr},
    ]
    return torch.optim.SGD(groups, lr=step_lr, momentum=momentum, nesterov=True)
