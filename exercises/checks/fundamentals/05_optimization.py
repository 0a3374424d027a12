"""Checks for fundamentals/05 (optimisation): `torch.optim.SGD`, `torch.optim.AdamW` and torch's own
schedulers (`LinearLR` then `CosineAnnealingLR`) are the oracles."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from dlkit.exercises import expect, expect_close, expect_tensor


def _problem(seed: int) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    batches = [
        (torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
        for _ in range(5)
    ]
    return model, batches


def _lockstep(start: nn.Module, batches: list, optimizer: torch.optim.Optimizer, oracle: nn.Module,
              learner_step: Callable[[int], None], mine: nn.Module, states: Callable[[], list],
              what: str, hint: str) -> None:  # fmt: skip
    """Train oracle (with optimizer) and mine (with learner_step(t), t from 1) on the same batches.

    After step 1 and after the last, ``states()`` gives (learner's tensors, oracle's tensors, name,
    rule) to compare before the weights, so that a wrong running average is named before its effect.
    """
    for t, (X, y) in enumerate(batches, start=1):
        for model in (oracle, mine):
            for p in model.parameters():
                p.grad = None
            F.cross_entropy(model(X), y).backward()
        optimizer.step()
        learner_step(t)
        if t not in (1, len(batches)):
            continue
        moved = any(not torch.equal(p, q) for p, q in zip(mine.parameters(), start.parameters(), strict=True))
        expect(moved, f"{what}: the parameters never changed. Update them in place (`p -= ...` or "
               "`p.add_(...)` under torch.no_grad()): `p = p - ...` only rebinds a local name")  # fmt: skip
        for mine_state, oracle_state, name, rule in states():
            for a, b in zip(mine_state, oracle_state, strict=True):
                expect_tensor(a, b, f"{what}, after step {t}: {name}", rtol=1e-7, atol=1e-12, reference=rule)
        for (name, p), q in zip(mine.named_parameters(), oracle.parameters(), strict=True):
            expect_tensor(p, q, f"{what}, after step {t}: parameter {name}", rtol=1e-7, atol=1e-9,
                          reference=hint)  # fmt: skip


def check_sgd_momentum_step(sgd_momentum_step) -> None:
    for weight_decay in (0.0, 0.1):
        start, batches = _problem(0)
        oracle, mine = copy.deepcopy(start), copy.deepcopy(start)
        optimizer = torch.optim.SGD(oracle.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay)
        params = list(mine.parameters())
        velocities = [torch.zeros_like(p) for p in params]

        def states(optimizer=optimizer, oracle=oracle, velocities=velocities) -> list:
            buffers = [optimizer.state[p]["momentum_buffer"] for p in oracle.parameters()]
            return [(velocities, buffers, "the velocities", "v = momentum * v + (grad + weight_decay * p)")]

        _lockstep(start, batches, optimizer, oracle,
                  lambda t, params=params, velocities=velocities, wd=weight_decay: sgd_momentum_step(
                      params, velocities, 0.1, 0.9, wd),
                  mine, states, f"sgd_momentum_step(lr=0.1, momentum=0.9, weight_decay={weight_decay})",
                  "torch.optim.SGD; the velocities match, so look at p -= lr * v")  # fmt: skip


def check_adamw_step(adamw_step) -> None:
    # eps = 1e-3 is far above its default, so that where it goes (outside the square root) shows.
    for weight_decay in (0.0, 0.5):
        start, batches = _problem(1)
        oracle, mine = copy.deepcopy(start), copy.deepcopy(start)
        hyper = {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-3, "weight_decay": weight_decay}
        optimizer = torch.optim.AdamW(oracle.parameters(), **hyper)
        params = list(mine.parameters())
        exp_avgs = [torch.zeros_like(p) for p in params]
        exp_avg_sqs = [torch.zeros_like(p) for p in params]

        def states(optimizer=optimizer, oracle=oracle, m=exp_avgs, v=exp_avg_sqs) -> list:
            state = [optimizer.state[p] for p in oracle.parameters()]
            alone = ", with grad = p.grad alone: AdamW decays p itself"
            rule_m = "m = beta1 * m + (1 - beta1) * grad" + alone
            rule_v = "v = beta2 * v + (1 - beta2) * grad**2" + alone
            return [
                (m, [s["exp_avg"] for s in state], "exp_avgs (m)", rule_m),
                (v, [s["exp_avg_sq"] for s in state], "exp_avg_sqs (v)", rule_v),
            ]

        what = f"adamw_step(lr=0.01, betas=(0.9, 0.99), eps=0.001, weight_decay={weight_decay})"
        _lockstep(start, batches, optimizer, oracle,
                  lambda t, params=params, m=exp_avgs, v=exp_avg_sqs, hyper=hyper: adamw_step(
                      params, m, v, t, **hyper),
                  mine, states, what,
                  "torch.optim.AdamW; m and v match, so look at the decay p *= 1 - lr * weight_decay, the "
                  "bias corrections m / (1 - beta1**step), and eps outside the square root")  # fmt: skip


def _torch_schedule(total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak_lr)
    warmup = LinearLR(optimizer, start_factor=1 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    scheduler = SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
    lrs = []
    for _ in range(total_steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return [*lrs, scheduler.get_last_lr()[0]]


def check_warmup_cosine_lr(warmup_cosine_lr) -> None:
    for total_steps, warmup_steps, peak_lr, min_lr in ((20, 4, 0.5, 0.0), (30, 5, 0.1, 0.01)):
        expected = _torch_schedule(total_steps, warmup_steps, peak_lr, min_lr)
        what = f"warmup_cosine_lr(step, {total_steps}, {warmup_steps}, peak_lr={peak_lr}, min_lr={min_lr})"
        for step in range(total_steps + 1):
            part = "warmup" if step < warmup_steps else "cosine"
            expect_close(
                warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, min_lr),
                expected[step],
                f"{what} at step {step} (the {part} part)",
                rtol=1e-9,
                atol=1e-12,
            )
