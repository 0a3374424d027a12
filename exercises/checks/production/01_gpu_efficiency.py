"""Checks for production/01 (GPU efficiency): a fake asynchronous device with a clock, and the memory
of a real model's training step measured with `dlkit.perf.saved_activation_bytes`."""

from __future__ import annotations

import math
import statistics

import torch
from torch import nn

from dlkit.exercises import expect
from dlkit.perf import saved_activation_bytes


class _FakeDevice:
    """A GPU in miniature: ``fn()`` queues work (costs[i] seconds) and returns after 1 ms of launching;
    the work runs only when ``sync()`` waits for it. ``clock()`` is the wall clock."""

    def __init__(self, costs: list[float]) -> None:
        self.now, self.pending, self.costs, self.calls = 0.0, 0.0, list(costs), 0

    def clock(self) -> float:
        return self.now

    def fn(self) -> None:
        self.pending += self.costs[min(self.calls, len(self.costs) - 1)]
        self.calls += 1
        self.now += 0.001

    def sync(self) -> None:
        self.now, self.pending = self.now + self.pending, 0.0


def check_median_seconds(median_seconds) -> None:
    # 2 warm-up calls compile (5 s each), then steps of 1 s with one slow outlier (4 s)
    for warmup, repeats, costs, expected in [
        (2, 3, [5, 5, 1, 1, 4], 1.001),
        (1, 5, [3, 2, 2, 9, 2, 2], 2.001),
    ]:
        device = _FakeDevice(costs)
        seconds = median_seconds(device.fn, device.sync, device.clock, warmup=warmup, repeats=repeats)
        what = f"median_seconds(warmup={warmup}, repeats={repeats}) on work of {costs[warmup:]} s per call"
        expect(
            device.calls == warmup + repeats,
            f"{what} called fn {device.calls} times; expected warmup + repeats = {warmup + repeats}",
        )
        expect(
            seconds is not None and float(seconds) > 0.01,
            f"{what} measured {seconds} s: the work had not run yet. Call sync() before reading the "
            "clock at the end of each timing (a GPU returns before it has done the work)",
        )
        timings = [c + 0.001 for c in costs[warmup : warmup + repeats]]  # the right ones: launch + work
        queued = [timings[0] + sum(costs[:warmup]), *timings[1:]]  # the warm-up's work still queued
        hints = {
            round(
                sum(timings) / repeats, 6
            ): ": that is the mean; take the median (one slow outlier pulls a mean)",
            round(
                statistics.median(queued), 6
            ): ": the first timing includes the warm-up's queued work; call sync() after the warm-up calls",
        }
        hint = hints.get(round(float(seconds), 6), " (the median of the timings after the warm-up)")
        expect(
            abs(float(seconds) - expected) < 1e-6,
            f"{what} is {float(seconds):.6g}; expected {expected}{hint}",
        )


def _memory_of_a_real_step() -> tuple[callable, int, int]:
    """memory(B) of a small convnet's training step with Adam: weights, gradients and Adam's two
    moments (4 copies of the parameters) plus the activations autograd saves for B images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    x = torch.randn(4, 3, 16, 16)
    per_image = saved_activation_bytes(model, lambda: model(x).sum()) // 4
    state = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    return (lambda b: state + per_image * b), state, per_image


def check_largest_batch(largest_batch) -> None:
    memory, state, per_image = _memory_of_a_real_step()
    for budget, max_batch in [
        (state + per_image * 1000 + 7, 4096),
        (state + per_image * 3, 4096),
        (10**12, 300),
        (state + per_image // 2, 64),
        (state + per_image * 4096, 4096),
    ]:
        expected = min(max_batch, max(0, (budget - state) // per_image))
        probes: list[int] = []

        def probed(b: int, probes=probes) -> int:
            probes.append(int(b))
            return memory(b)

        got = largest_batch(probed, budget, max_batch)
        what = f"largest_batch(budget={budget:,} bytes, max_batch={max_batch})"
        expect(isinstance(got, int), f"{what} returned {type(got).__name__}; return an int batch size")
        expect(got <= max_batch, f"{what} returned {got}, above max_batch: never probe or return more")
        if got != expected:
            hint = " (a power of two: after doubling, bisect between the last fit and the first miss)"
            hint = hint if got and got & (got - 1) == 0 else ""
            hint = hint or (
                " (one past the answer: return the last size that fits)" if got == expected + 1 else ""
            )
            expect(False, f"{what} returned {got}; expected {expected}{hint}")
        expect(
            all(memory(b) <= budget for b in [got] if b),
            f"{what} returned {got}, whose step needs {memory(got):,} bytes: more than the budget",
        )
        limit = 2 * math.ceil(math.log2(max_batch)) + 3
        expect(
            len(probes) <= limit,
            f"{what} called memory() {len(probes)} times; a search doubling then bisecting needs at "
            f"most {limit} (each probe is a training step on the device)",
        )
