# %% [markdown]
# # 05 · Optimisation: optimisers, learning-rate schedules, losses, regularisation
#
# Lesson 04 wrote the training loop by hand. `dlkit.train` holds that same loop (`train_one_epoch`,
# `evaluate`, and `fit`, which calls them once per epoch), so every cell here is about *what* we train
# with rather than *how*: one MLP, one data set, one seed, and one thing changed at a time.
#
# **What you will learn**
# - SGD, SGD with momentum, Adam and AdamW on the same problem: how fast each brings the loss down;
# - learning-rate schedules (StepLR, CosineAnnealingLR, OneCycleLR, warmup then cosine): their shape
#   step by step, and what one buys in training;
# - why classification uses cross-entropy rather than mean squared error on probabilities;
# - dropout, batch norm and weight decay against one baseline, on a training set small enough to
#   overfit: which of them hold the validation loss down and shrink the train-validation gap.

# %%
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR, StepLR

from dlkit.config import flag
from dlkit.data import choose_dataset, load_dataset, split
from dlkit.device import seed_everything
from dlkit.errors import UserError
from dlkit.lesson import Lesson, LessonConfig, approx
from dlkit.plots import plot_curves
from dlkit.train import History, evaluate, fit, make_loader


@dataclass
class Config(LessonConfig):
    num_train: int = flag(10_000, help="examples for the optimiser, schedule and loss comparisons", min=100)
    num_small: int = flag(1_000, help="examples for the regularisation runs: few enough to overfit", min=50)
    num_val: int = flag(2_000, help="training examples held out (never trained on) to compare runs on",
                        min=100, max=50_000)  # fmt: skip
    num_test: int = flag(2_000, help="test examples that score each final model once", min=100)
    num_hidden: int = flag(256, help="units in each of the two hidden layers", min=1, max=8192)
    batch_size: int = 64
    num_epochs: int = flag(8, help="epochs of the optimiser, schedule and loss runs", min=1, max=1000)
    num_epochs_small: int = flag(50, help="epochs of the regularisation runs", min=1, max=5000)
    lr_sgd: float = flag(0.01, help="learning rate of plain SGD and SGD with momentum", above=0, max=10)
    momentum: float = 0.9
    lr_adam: float = flag(1e-3, help="learning rate of Adam and AdamW, the peak of every schedule",
                          above=0, max=1)  # fmt: skip
    weight_decay: float = flag(2.0, help="AdamW's decay in the regularisation runs (per step: lr * this)",
                               min=0, max=100)  # fmt: skip
    dropout_p: float = flag(0.5, help="dropout of the regularisation run that uses it", min=0, max=0.9)


QUICK = {"num_train": 800, "num_small": 300, "num_val": 500, "num_test": 500, "num_hidden": 64}
QUICK |= {"batch_size": 32, "num_epochs": 8, "num_epochs_small": 40}
lesson = Lesson("fundamentals/05_optimization", Config, quick=QUICK)
cfg, device, full = lesson.cfg, lesson.device, not lesson.quick

# Full mode uses Fashion-MNIST (downloaded when missing); quick mode falls back to the bundled digits.
name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
train_all, test_all = load_dataset(name, split="train"), load_dataset(name, split="test")
if cfg.num_val >= len(train_all):
    raise UserError(f"--num-val {cfg.num_val} leaves nothing to train on: {name} has {len(train_all):,}")
val, rest = split(train_all, cfg.num_val, seed=cfg.seed)  # the same held-out images in every run
train, small = rest.subset(cfg.num_train, seed=cfg.seed), rest.subset(cfg.num_small, seed=cfg.seed)
test = test_all.subset(cfg.num_test, seed=cfg.seed)
lesson.uses_data(
    name, f"{train.source}; regularisation: {len(small):,} of them; validation: {len(val):,}; {test.source}"
)
num_inputs, num_classes = train.x[0].numel(), len(train.classes)  # 784 and 10 for Fashion-MNIST
loaders = {
    "train": make_loader(train.tensor_dataset(), cfg.batch_size, shuffle=True),
    "small": make_loader(small.tensor_dataset(), cfg.batch_size, shuffle=True),
    "small_eval": make_loader(small.tensor_dataset(), 1024, shuffle=False),
    "val": make_loader(val.tensor_dataset(), 1024, shuffle=False),
    "test": make_loader(test.tensor_dataset(), 1024, shuffle=False),
}
print(f"{name}: train {tuple(train.x.shape)}, small {len(small)}, val {len(val)}, test {len(test)}")

# %% [markdown]
# Every curve per epoch and every comparison below uses the **validation** split: `num_val` training
# images that no run trains on. The test subset scores each final model once, after its training, and
# decides nothing.
#
# ## One model, one training function
#
# `make_mlp` seeds the generator before it creates layers, so every run starts from the same weights
# (batch norm and dropout have no random weights, so the linear layers draw the same numbers).
# `train` seeds again before `fit`, so every run also sees the same batches in the same order.


# %%
def make_mlp(*, dropout_p: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """(B, 1, H, W) -> (B, num_classes) logits through two hidden layers of ReLU units.

    Batch norm sits between each linear layer and its ReLU; dropout comes after the ReLU.
    """
    seed_everything(cfg.seed)
    layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, H, W) -> (B, H*W)
    for n_in in (num_inputs, cfg.num_hidden):
        layers.append(nn.Linear(n_in, cfg.num_hidden))  # (B, num_hidden)
        layers += [nn.BatchNorm1d(cfg.num_hidden)] if batch_norm else []
        layers.append(nn.ReLU())
        layers += [nn.Dropout(dropout_p)] if dropout_p > 0 else []
    layers.append(nn.Linear(cfg.num_hidden, num_classes))
    return nn.Sequential(*layers).to(device)


test_scores: dict[str, dict[str, float]] = {}  # each final model's test loss and accuracy


def train(label: str, model: nn.Module, optimizer: torch.optim.Optimizer, **kwargs: Any) -> History:
    """``fit`` on loaders[data] (default "train"), validated after every epoch; kwargs go to ``fit``.

    A scheduler, when given, steps after every batch. The final model is then scored once on the test
    subset, into ``test_scores[label]``.
    """
    seed_everything(cfg.seed)  # the same shuffling order for every run
    kwargs = {
        "num_epochs": cfg.num_epochs,
        "loss_fn": F.cross_entropy,
        "scheduler_interval": "batch",
        **kwargs,
    }
    data = loaders[kwargs.pop("data", "train")]
    history = fit(model, optimizer, data, loaders["val"], device=device, verbose=False, **kwargs)
    test_scores[label] = evaluate(model, F.cross_entropy, loaders["test"], device)  # once, at the end
    last = history.last
    print(f"{label:<20} train loss {last['train_loss']:.4f}  val acc {last['val_acc']:.4f}", end="  ")
    print(f"test acc {test_scores[label]['acc']:.4f}")
    return history


# %% [markdown]
# ## Four optimisers
#
# - **SGD**: `w -= lr * grad`.
# - **SGD + momentum**: a velocity `v = momentum * v + grad` and `w -= lr * v`. Along a direction the
#   gradient keeps pointing in, steps grow to about `lr / (1 - momentum)`, ten times `lr` at 0.9.
# - **Adam**: divides a momentum-averaged gradient by the root of a running mean of squared gradients,
#   so every weight moves about `lr` per step whatever its gradient's scale.
# - **AdamW**: Adam plus weight decay applied to the weights directly (`w -= lr * weight_decay * w`),
#   not through the gradient, where Adam's scaling would weaken it for weights with large gradients.

# %%
optimizers: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": lambda params: torch.optim.SGD(params, lr=cfg.lr_sgd),
    "SGD + momentum": lambda params: torch.optim.SGD(params, lr=cfg.lr_sgd, momentum=cfg.momentum),
    "Adam": lambda params: torch.optim.Adam(params, lr=cfg.lr_adam),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=cfg.lr_adam, weight_decay=0.01),  # the default
}
runs: dict[str, History] = {}
for label, make_optimizer in optimizers.items():
    model = make_mlp()
    runs[label] = train(label, model, make_optimizer(model.parameters()))
curves = {label: runs[label].column("train_loss") for label in optimizers}
fig = plot_curves(curves, title=f"Optimisers on {name}", xlabel="epoch", ylabel="training loss", logy=True)
# AdamW's curve lies on Adam's: Adam as a wide pale band with open circles, AdamW dashed in black on top.
styles = {
    "SGD": {"marker": "s"},
    "SGD + momentum": {"marker": "^"},
    "Adam": {"marker": "o", "markersize": 11, "markerfacecolor": "none", "linewidth": 7, "alpha": 0.4},
    "AdamW": {"marker": "x", "markersize": 7, "linestyle": "--", "color": "black"},
}
for line in fig.axes[0].lines:
    line.set(**styles[line.get_label()])
fig.axes[0].legend()
lesson.savefig(fig, "optimizer_loss_curves")
chance = 1 / num_classes


def val_acc(label: str) -> float:
    return runs[label].last["val_acc"]  # validation accuracy after the last epoch


def test_acc(label: str) -> float:
    return test_scores[label]["acc"]  # the final model's test accuracy, measured once


lesson.record("test_acc_sgd", test_acc("SGD"), min=0.6 if full else 0.2, chance=chance)
lesson.record("test_acc_momentum", test_acc("SGD + momentum"), min=0.8 if full else 0.5, chance=chance)
lesson.record("test_acc_adam", test_acc("Adam"), min=0.83 if full else 0.6, chance=chance)
lesson.record("test_acc_adamw", test_acc("AdamW"), min=0.83 if full else 0.6, chance=chance)
lesson.record("val_acc_momentum_minus_sgd", val_acc("SGD + momentum") - val_acc("SGD"), min=0.05)
lesson.record("val_acc_adam_minus_sgd", val_acc("Adam") - val_acc("SGD"), min=0.05)

# %% [markdown]
# What to notice: at the same `lr` and number of steps, momentum ends far below plain SGD's loss,
# since its steps are about ten times longer. Adam gets further still at a tenth of that `lr`, with no
# tuning. AdamW's dashed curve lies on Adam's pale band: its default decay (0.01) is too weak to matter
# in a few epochs. Plain SGD is not wrong, only slow at this `lr`.
#
# ## Learning-rate schedules
#
# A scheduler changes the optimiser's `lr` each time `scheduler.step()` is called; here, after every
# batch. To see its shape we need no training at all: a dummy parameter, an optimiser, and steps.

# %%
total_steps = cfg.num_epochs * len(loaders["train"])
warmup_steps = max(1, total_steps // 10)


def warmup_cosine(step: int) -> float:
    """Factor on the peak lr: linear from 1/warmup_steps up to 1, then half a cosine down to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1
    return 0.5 * (1 + math.cos(math.pi * progress))


schedules: dict[str, Callable[[torch.optim.Optimizer], LRScheduler]] = {
    "StepLR (x0.1 each third)": lambda opt: StepLR(opt, step_size=total_steps // 3, gamma=0.1),
    "CosineAnnealingLR": lambda opt: CosineAnnealingLR(opt, T_max=total_steps),
    "OneCycleLR": lambda opt: OneCycleLR(opt, max_lr=cfg.lr_adam, total_steps=total_steps),
    "warmup + cosine": lambda opt: LambdaLR(opt, warmup_cosine),
}


def lr_trace(make_scheduler: Callable[[torch.optim.Optimizer], LRScheduler]) -> list[float]:
    """The lr at steps 0 .. total_steps (the last one is the lr after the final step)."""
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=cfg.lr_adam)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(total_steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()  # no gradient, so nothing moves; the scheduler expects a step before its own
        scheduler.step()
    return [*lrs, scheduler.get_last_lr()[0]]


traces = {label: [lr / cfg.lr_adam for lr in lr_trace(make)] for label, make in schedules.items()}
fig = plot_curves(traces, title=f"Schedules over {total_steps} steps", xlabel="step", ylabel="lr / peak lr")
lesson.savefig(fig, "lr_schedules")

step_lr, cosine = traces["StepLR (x0.1 each third)"], traces["CosineAnnealingLR"]
one_cycle, warm = traces["OneCycleLR"], traces["warmup + cosine"]
print(f"{total_steps} steps, of which {warmup_steps} warm up")
lesson.record("steplr_after_first_drop", step_lr[total_steps // 3], **approx(0.1))
lesson.record("cosine_mid", cosine[total_steps // 2], min=0.49, max=0.51)
lesson.record("cosine_end", cosine[total_steps], max=1e-9)
lesson.record("onecycle_start", one_cycle[0], **approx(1 / 25))  # OneCycleLR starts at max_lr / 25
lesson.record("onecycle_peak_at", one_cycle.index(max(one_cycle)) / total_steps, min=0.25, max=0.35)
lesson.record("warmup_start", warm[0], **approx(1 / warmup_steps))
lesson.record("warmup_end", warm[warmup_steps - 1], **approx(1.0))
lesson.record("warmup_cosine_mid", warm[(warmup_steps + total_steps) // 2], min=0.49, max=0.51)
lesson.record("warmup_cosine_end", warm[total_steps], max=1e-9)

# %% [markdown]
# What to notice: StepLR drops by 10x at fixed steps; cosine glides from the peak to 0; OneCycleLR
# starts at `max_lr / 25`, climbs for 30% of training and then anneals far below its start;
# warmup + cosine reaches the peak after `warmup_steps` and ends at exactly 0. Warmup protects the
# first steps, when Adam's running averages hold few samples and the weights are still random.
#
# Now two of them in training, against the constant `lr` of the Adam run above (same peak, seed, data).

# %%
for label in ("OneCycleLR", "warmup + cosine"):
    model = make_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr_adam)
    runs[label] = train(label, model, optimizer, scheduler=schedules[label](optimizer))
curves = {"constant lr": runs["Adam"].column("val_acc")}
curves |= {label: runs[label].column("val_acc") for label in ("OneCycleLR", "warmup + cosine")}
fig = plot_curves(curves, title="Adam: fixed vs scheduled lr", xlabel="epoch", ylabel="validation accuracy")
lesson.savefig(fig, "schedule_val_accuracy")
lesson.record("test_acc_warmup_cosine", test_acc("warmup + cosine"), min=0.83 if full else 0.6, chance=chance)
lesson.record("test_acc_onecycle", test_acc("OneCycleLR"), min=0.83 if full else 0.6, chance=chance)
schedule_gain = val_acc("warmup + cosine") - val_acc("Adam")
loss_ratio = runs["warmup + cosine"].last["train_loss"] / runs["Adam"].last["train_loss"]
print(f"warmup + cosine vs constant lr: val accuracy {schedule_gain:+.3f}, train loss x{loss_ratio:.2f}")
if full:  # quick mode is too short for a schedule to pay (see below): there it is only printed
    lesson.record("val_acc_warmup_cosine_minus_constant", schedule_gain, min=-0.015, max=0.05)
    lesson.record("warmup_cosine_train_loss_ratio", loss_ratio, max=0.95)

# %% [markdown]
# What to notice: with a schedule the last epochs take small steps, so the weights settle into a
# minimum instead of bouncing around it: the last epoch's training loss is lower than with a constant
# `lr`, and the validation accuracy stops jumping from epoch to epoch. On a run this short the final
# accuracy ends about level with the constant `lr`; the gain grows with longer training. (Quick mode
# is too short for this: there the warmup and the lower average `lr` only slow it down.)
#
# ## Mean squared error vs cross-entropy for classification
#
# We could treat the softmax probabilities as a regression target: squared error against the one-hot
# label. Its gradient with respect to a logit passes through the softmax's slope, which vanishes when
# the model is confidently wrong. Cross-entropy's gradient is simply `softmax - one_hot`, large exactly
# when the model is wrong.


# %%
def mse_on_probabilities(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error between softmax(logits) (B, C) and one-hot targets (B, C), summed over classes."""
    probs = y_hat.float().softmax(dim=1)  # (B, C)
    return (probs - F.one_hot(y, probs.shape[1]).float()).pow(2).sum(dim=1).mean()


for label in ("SGD + momentum", "Adam"):  # the same optimisers as above, which used cross-entropy
    model = make_mlp()
    optimizer = optimizers[label](model.parameters())
    runs[f"MSE, {label}"] = train(f"MSE, {label}", model, optimizer, loss_fn=mse_on_probabilities)
lesson.record("test_acc_mse", test_acc("MSE, SGD + momentum"), min=0.7 if full else 0.2, chance=chance)
lesson.record("val_acc_ce_minus_mse", val_acc("SGD + momentum") - val_acc("MSE, SGD + momentum"), min=0.02)
lesson.record("test_acc_mse_adam", test_acc("MSE, Adam"), min=0.8 if full else 0.5, chance=chance)
lesson.record("val_acc_ce_minus_mse_adam", val_acc("Adam") - val_acc("MSE, Adam"), min=-0.05, max=0.05)

# %% [markdown]
# What to notice: with SGD + momentum, whose step is proportional to the gradient, cross-entropy is
# clearly ahead: MSE's gradients are smaller, and vanish on confidently wrong examples. Adam divides
# each gradient by its own running scale, which undoes most of that, and the two losses end close
# (with long training MSE can match cross-entropy: Hui & Belkin, 2021). Cross-entropy stays the
# default: it is the negative log-likelihood of the labels under the softmax, and its gradient is
# largest where the model is most wrong, whatever the optimiser.
#
# ## Regularisation: on a training set small enough to overfit
#
# With only `num_small` examples and many epochs, the baseline learns its training set by heart. The
# **gap** between its accuracy on training and validation data, and its rising validation loss, show
# the overfitting. Each variant changes one thing: dropout, batch norm, or AdamW weight decay (the
# baseline is AdamW with `weight_decay=0`, which is Adam). The decay is far above the default because
# what shrinks the weights is `lr * weight_decay` per step: 0.002 here, over 800 steps. Both
# accuracies are measured the same way, in eval mode.

# %%
variants = {
    "baseline": (make_mlp(), 0.0),
    "dropout": (make_mlp(dropout_p=cfg.dropout_p), 0.0),
    "batch norm": (make_mlp(batch_norm=True), 0.0),
    "weight decay": (make_mlp(), cfg.weight_decay),
}
val_losses, train_loss, gap = {}, {}, {}
for label, (model, weight_decay) in variants.items():
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr_adam, weight_decay=weight_decay)
    history = train(label, model, optimizer, data="small", num_epochs=cfg.num_epochs_small)
    val_losses[label], train_loss[label] = history.column("val_loss"), history.last["train_loss"]
    train_acc = evaluate(model, F.cross_entropy, loaders["small_eval"], device)["acc"]
    gap[label] = train_acc - history.last["val_acc"]
    print(f"{'':<20} train acc {train_acc:.4f}  gap {gap[label]:.4f}  val loss {val_losses[label][-1]:.4f}")
fig = plot_curves(
    val_losses, title=f"{len(small):,} training examples", xlabel="epoch", ylabel="validation loss"
)
lesson.savefig(fig, "regularization_val_loss")

# %% [markdown]
# What to notice: in full mode the baseline's validation loss falls, bottoms out after about ten epochs
# and climbs again while its training loss keeps falling: overfitting, even though its validation
# accuracy barely moves. Dropout and weight decay hold the validation loss near its minimum, well below
# the baseline's at the end (the ratios printed below; the test set, scored once, agrees). Dropout also
# shrinks the accuracy gap; weight decay at this strength makes the model less over-confident more than
# it makes it right more often. Batch norm is an optimisation aid first: it fits the training set much
# faster (a far lower training loss) and so overfits sooner, not less. (In quick mode the runs are too
# short and small for the effects of dropout and weight decay to be reliable: printed, not checked.)
#
# ## What you measured

# %%
for label in variants:
    key = f"test_acc_{label.replace(' ', '_')}"
    lesson.record(key, test_scores[label]["acc"], min=0.7 if full else 0.4, chance=chance)
lesson.record("val_gap_baseline", gap["baseline"], min=0.1 if full else 0.03)  # the baseline overfits
lesson.record("batch_norm_train_loss_ratio", train_loss["batch norm"] / train_loss["baseline"], max=0.5)
val_loss_ratio = {label: losses[-1] / val_losses["baseline"][-1] for label, losses in val_losses.items()}
test_loss_ratio = {label: test_scores[label]["loss"] / test_scores["baseline"]["loss"] for label in variants}
print("validation loss / baseline's:", {k: round(v, 3) for k, v in val_loss_ratio.items()})
print("test loss / baseline's (final models):", {k: round(v, 3) for k, v in test_loss_ratio.items()})
if full:  # quick mode's runs are too short and small for these effects to be reliable: printed only
    lesson.record("dropout_val_gap_reduction", gap["baseline"] - gap["dropout"], min=0.02)
    lesson.record("dropout_val_loss_ratio", val_loss_ratio["dropout"], max=0.9)
    lesson.record("weight_decay_val_loss_ratio", val_loss_ratio["weight decay"], max=0.9)
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check fundamentals/05` in a terminal). The
# checks train a tiny model with your update and with `torch.optim`, and compare the weights.

# %% tags=["exercise"]
import torch


def sgd_momentum_step(
    params: list[torch.Tensor],
    velocities: list[torch.Tensor],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    """Do one step of `torch.optim.SGD(lr, momentum, weight_decay)` in place, using each `p.grad`.

    For each parameter p and its velocity v (same shape, zeros at first): `g = p.grad + weight_decay *
    p`, `v = momentum * v + g`, `p -= lr * v`. Change p and v in place (`mul_`, `add_`, `-=`) under
    `torch.no_grad()`: `p = p - ...` would only rebind a name.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


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
    """Do step number `step` (1, 2, ...) of `torch.optim.AdamW` in place, using each `p.grad`.

    Decay the weight first, `p *= 1 - lr * weight_decay`; update `m = beta1 m + (1 - beta1) g` and
    `v = beta2 v + (1 - beta2) g**2` (in exp_avgs, exp_avg_sqs); correct their bias towards their zero
    start, `m_hat = m / (1 - beta1**step)` (same for v); then `p -= lr * m_hat / (sqrt(v_hat) + eps)`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
def warmup_cosine_lr(
    step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0
) -> float:
    """Return the lr at `step` (0 .. total_steps) of linear warmup, then a cosine from peak_lr to min_lr.

    Like `warmup_cosine` above, in lr units: `peak_lr * (step + 1) / warmup_steps` while step <
    warmup_steps, then half a cosine (`math.cos`) that starts at peak_lr at step warmup_steps and ends
    at min_lr at total_steps. The check compares it with torch's `LinearLR` then `CosineAnnealingLR`.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
