"""Plausible wrong answers to production/01's exercises: each must make its check fail."""

from __future__ import annotations

import statistics


def median_seconds_no_sync(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()  # returns once the work is queued: this times the launch, not the work
        times.append(clock() - start)
    return statistics.median(times)


def median_seconds_no_warmup(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):  # the first timings include compiling
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


def median_seconds_mean(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return sum(times) / len(times)  # one slow outlier pulls the mean


def median_seconds_no_sync_after_warmup(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()  # the warm-up's work is still queued when the first timing starts
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


def largest_batch_linear(memory, budget: int, max_batch: int = 4096) -> int:
    best = 0
    for b in range(1, max_batch + 1):  # right, but one training step per candidate
        if memory(b) > budget:
            break
        best = b
    return best


def largest_batch_doubling_only(memory, budget: int, max_batch: int = 4096) -> int:
    best, b = 0, 1
    while b <= max_batch and memory(b) <= budget:
        best, b = b, 2 * b
    return best  # a power of two: up to half the memory left unused


def largest_batch_first_miss(memory, budget: int, max_batch: int = 4096) -> int:
    lo, hi = 1, max_batch + 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if memory(mid) <= budget else (lo, mid)
    return min(lo, max_batch)  # the first size that does NOT fit


WRONG = {
    "median_seconds": [
        median_seconds_no_sync,
        median_seconds_no_warmup,
        median_seconds_mean,
        median_seconds_no_sync_after_warmup,
    ],  # fmt: skip
    "largest_batch": [largest_batch_linear, largest_batch_doubling_only, largest_batch_first_miss],
}
