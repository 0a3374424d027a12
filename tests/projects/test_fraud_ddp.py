"""The fraud detector trains under ``torchrun --nproc_per_node 2`` on the CPU (gloo): each process takes its
share of every global batch (a DistributedSampler), DDP averages the gradients, process 0 alone writes
the run folder, every process takes the same number of steps, and the model it leaves finds the
synthetic frauds."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

pytestmark = [
    pytest.mark.slow,  # three processes import torch: 20 to 60 s on 2 busy cores
    pytest.mark.skipif(
        not torch.distributed.is_available() or sys.platform == "win32",
        reason="needs torch.distributed with gloo on Linux or macOS",
    ),
]


@pytest.mark.parametrize("model", ["autoencoder", "mlp"])
def test_a_quick_run_trains_on_two_processes(tmp_path: Path, model: str) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    args = ["projects.fraud_detector", "train", "--quick", "--model", model, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0"}
    proc = subprocess.run(
        [*launch, *args, "--runs-dir", str(tmp_path), "--run-name", "ddp"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("run folder:") == 1  # process 0 alone prints and writes
    with (tmp_path / "ddp" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [100, 200, 300]  # every process took the same 300 steps
    info = json.loads((tmp_path / "ddp" / "model_info.json").read_text())
    assert info["training"]["steps"] == 300 and info["metrics"]["val"]["ap"] > 0.3
