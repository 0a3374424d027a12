"""Checks for production/03 (deployment): hand-worked arrival times for the batcher, and a model with
dropout exported by `torch.export` for the equivalence check."""

from __future__ import annotations

import torch
from torch import nn

from dlkit.exercises import expect, expect_close


def check_group_requests(group_requests) -> None:
    cases = [  # (arrivals, max_batch, max_wait, expected), each worked by hand
        ([0.0, 0.001, 0.002, 0.003, 0.004], 2, 1.0, [[0, 1], [2, 3], [4]]),  # full batches close at once
        ([0.0, 0.004, 0.005, 0.011, 0.012], 8, 0.005, [[0, 1, 2], [3, 4]]),  # on the deadline: joins
        ([0.0, 0.004, 0.008, 0.012], 8, 0.005, [[0, 1], [2, 3]]),  # the deadline counts from the first
        ([0.0, 0.1, 0.2], 4, 0.05, [[0], [1], [2]]),  # a lone request waits at most max_wait
        ([], 4, 0.01, []),
    ]
    for arrivals, max_batch, max_wait, expected in cases:
        got = group_requests(list(arrivals), max_batch, max_wait)
        what = f"group_requests({arrivals}, max_batch={max_batch}, max_wait={max_wait})"
        got = [list(map(int, b)) for b in got]
        if got != expected:
            hint = ""
            if any(len(b) > max_batch for b in got):
                hint = " (a batch is over max_batch: close it when it is full)"
            elif sum(map(len, got)) != len(arrivals):
                hint = " (every request must be in exactly one batch)"
            expect(
                False,
                f"{what} is {got}; expected {expected}{hint}. A batch takes requests that arrive "
                "at most max_wait after the request that OPENED it, up to max_batch of them",
            )


def check_max_export_diff(max_export_diff) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    inputs = torch.randn(150, 6, dtype=torch.float64)
    batch = torch.export.Dim("batch", min=1, max=1024)  # any batch size runs
    program = torch.export.export(model.eval(), (inputs[:2],), dynamic_shapes=({0: batch},)).module()
    model.train()  # as it comes out of training: the check must put it in eval mode itself
    got = max_export_diff(model, program, inputs, 64)
    expect(
        isinstance(got, float),
        f"max_export_diff returned {type(got).__name__}; return a Python float "
        "(.item() of the largest difference)",
    )
    expect(
        got < 1e-6,
        f"max_export_diff(model, its torch.export program) is {got:.3g}; expected ~0: the "
        "model was in training mode (dropout on). Call model.eval() before comparing",
    )
    with torch.no_grad():
        eager = model.eval()(inputs)
    shift = torch.zeros_like(eager)
    shift[137, 2], shift[5, 0] = -0.25, 0.1  # in the last batch, and negative
    got = max_export_diff(model.train(), lambda x: program(x) + shift[_rows(x, inputs)], inputs, 64)
    expect_close(
        got,
        0.25,
        "max_export_diff with outputs off by -0.25 at one element of the last batch "
        "(the largest ABSOLUTE difference over ALL batches)",
        rtol=1e-6,
    )


def _rows(x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The rows of ``inputs`` that batch ``x`` holds (the batches are consecutive slices)."""
    start = int(torch.nonzero((inputs == x[0]).all(dim=1))[0])
    return torch.arange(start, start + len(x))
