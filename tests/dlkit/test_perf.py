"""dlkit.perf: the measuring tools of the production lessons and benchmarks, checked without timing
anything for real (fake clocks, fake posts) and against numpy/PyTorch where one exists."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dlkit import perf


def test_percentile_is_numpys_linear_interpolation():
    values = [5.0, 1.0, 9.0, 2.0, 7.5]
    for q in (0, 25, 50, 90, 95, 100):
        assert perf.percentile(values, q) == pytest.approx(np.percentile(values, q))
    with pytest.raises(ValueError):
        perf.percentile([], 50)


def test_time_per_call_excludes_warmup_and_returns_the_median(monkeypatch):
    ticks = iter([10.0, 10.2, 10.2, 10.8, 10.8, 11.1])  # 3 timings of 2 calls: 0.1, 0.3, 0.15 s per call
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(ticks))
    calls = []
    seconds = perf.time_per_call(
        lambda: calls.append(1), device=torch.device("cpu"), warmup=3, repeats=3, calls=2
    )
    assert seconds == pytest.approx(0.15) and len(calls) == 3 + 3 * 2


def test_switches_restore_threads():
    before = torch.get_num_threads()
    with perf.switches(threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_saved_activation_bytes_of_a_linear_layer():
    layer, x = nn.Linear(4, 3), torch.randn(5, 4)
    assert perf.saved_activation_bytes(layer, lambda: layer(x).sum()) == 5 * 4 * 4  # its input, float32


def test_png_images_decode_to_the_pixels_encoded():
    images = torch.randint(0, 256, (3, 3, 6, 5), dtype=torch.uint8)
    data = perf.PNGImages(images, torch.arange(3))
    assert len(data) == 3 and all(torch.equal(data[i][0], images[i]) and data[i][1] == i for i in range(3))
    rate, first = perf.feed_rate([(images, None)], torch.device("cpu"), 3)
    assert rate > 0 and torch.equal(first, images.float() / 255)


def test_markdown_table():
    text = perf.markdown_table([{"a": 1234.5, "b": 0.01234}, {"a": None, "b": "x"}], ["a", "b"])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1,234 | 0.0123 |", "|  | x |"]


def test_load_test_in_process_counts_errors_and_runs_requests_concurrently():
    in_flight, peak, lock = [0], [0], threading.Lock()

    def post(body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.01)
        with lock:
            in_flight[0] -= 1
        if body == "boom":
            raise ConnectionError("reset")
        return SimpleNamespace(status_code=200 if body % 5 else 422, text="bad input")

    result = perf.load_test_in_process(post, [*range(1, 21), "boom"], concurrency=4, time_limit=30)
    assert len(result.latencies) == 16 and len(result.errors) == 5  # 5, 10, 15, 20, and the exception
    assert any("HTTP 422" in e for e in result.errors) and any("ConnectionError" in e for e in result.errors)
    assert peak[0] > 1 and result.summary()["errors"] == 5.0


def test_load_test_in_process_stops_at_the_time_limit():
    result = perf.load_test_in_process(
        lambda b: (time.sleep(0.05), SimpleNamespace(status_code=200, text=""))[1],
        list(range(1000)), concurrency=2, time_limit=0.2,
    )  # fmt: skip
    assert 2 <= len(result.latencies) < 20 and result.seconds < 2
