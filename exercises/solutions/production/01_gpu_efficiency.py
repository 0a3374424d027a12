"""Reference solutions for production/01's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import statistics


def median_seconds(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):  # first calls allocate, pick kernels, compile
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()  # the device has finished: now the clock means something
        times.append(clock() - start)
    return statistics.median(times)


def largest_batch(memory, budget: int, max_batch: int = 4096) -> int:
    if memory(1) > budget:
        return 0
    fits, batch = 1, 2
    while batch <= max_batch and memory(batch) <= budget:  # double while it fits
        fits, batch = batch, 2 * batch
    misses = min(batch, max_batch + 1)  # the first size known not to fit (or past the cap)
    while misses - fits > 1:  # fits fits, misses does not: bisect between them
        middle = (fits + misses) // 2
        fits, misses = (middle, misses) if memory(middle) <= budget else (fits, middle)
    return fits
