"""The ranking model trains under ``torchrun --nproc_per_node 2`` on the CPU (gloo) as in one process.

Each process takes every other user of each global batch (``RankerBatches``), DDP averages the
gradients, so with every unrated item in the loss (``--negatives 0``: no sampling to differ between
processes) and batches that split evenly, two processes take the same steps as one: the same
validation metrics, the same kept weights, one run folder written by process 0.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from projects.recommendation_system import train

pytestmark = [
    pytest.mark.slow,  # three processes import torch: 20-40 s on 2 busy cores
    pytest.mark.skipif(
        not torch.distributed.is_available() or sys.platform == "win32",
        reason="needs torch.distributed with gloo on Linux or macOS",
    ),
]

# The synthetic set's 240 users in global batches of 64, 64, 64, 48: each splits evenly in two.
ARGS = ["train", "--quick", "--model", "ranker", "--device", "cpu", "--num-epochs", "3", "--negatives", "0"]


def rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def test_the_ranker_trains_on_two_processes_as_on_one(tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0"}
    proc = subprocess.run(
        [*launch, "projects.recommendation_system", *ARGS, "--runs-dir", str(tmp_path), "--run-name", "ddp"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    single = train.main([*ARGS[1:], "--runs-dir", str(tmp_path), "--run-name", "single"])

    two, one = rows(tmp_path / "ddp"), rows(tmp_path / "single")
    assert len(two) == len(one) == 3  # one row per epoch, written once, by process 0
    for r2, r1 in zip(two, one, strict=True):
        assert r2["step"] == r1["step"] == 4 * r1["epoch"]  # the same global batches: 4 steps an epoch
        for key in ("train_loss", "val_ndcg", "val_hr", "val_recall"):
            assert r2[key] == pytest.approx(r1[key], abs=1e-5), key
    keys = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)  # saved from the model inside DDP
    assert proc.stdout.count("run folder:") == 1  # only process 0 prints
    assert (tmp_path / "ddp" / "val_metrics.json").exists()
    assert single["val"]["val_ndcg"] > 0
