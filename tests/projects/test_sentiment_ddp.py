"""The sentiment analyzer trains under ``torchrun --nproc_per_node 2`` on the CPU (gloo) as in one process.

Each process gets every other review of each global batch (projects.sentiment_analyzer.data), DDP
averages the gradients, so two processes take the same optimizer steps as one process with the same
global batch: the same metrics, the same kept weights, one run folder written by process 0.
"""

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

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

from projects.sentiment_analyzer import train

pytestmark = [
    pytest.mark.slow,  # 20 to 40 s on 2 busy cores: three processes import torch
    pytest.mark.skipif(
        not torch.distributed.is_available() or sys.platform == "win32",
        reason="needs torch.distributed with gloo on Linux or macOS",
    ),
]

# 1,000 quick reviews: 900 train in global batches of 256, 256, 256 and 132: each splits evenly in two.
ARGS = ["train", "--quick", "--device", "cpu", "--num-epochs", "3", "--patience", "3"]


def rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_nbsvm_trains_on_two_processes_as_on_one(tmp_path: Path) -> None:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0"}
    proc = subprocess.run(
        [*launch, "projects.sentiment_analyzer", *ARGS, "--runs-dir", str(tmp_path), "--run-name", "ddp"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    single = train.main([*ARGS[1:], "--runs-dir", str(tmp_path), "--run-name", "single"])

    two, one = rows(tmp_path / "ddp"), rows(tmp_path / "single")
    assert len(two) == len(one) == 3  # written once, by process 0
    for r2, r1 in zip(two, one, strict=True):
        assert r2["step"] == r1["step"] == 4 * r1["epoch"]  # the same global batches: 4 steps an epoch
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert r2[key] == pytest.approx(r1[key], abs=1e-5), key
    info = json.loads((tmp_path / "ddp" / "model_info.json").read_text())
    assert info["metrics"]["test"]["acc"] == pytest.approx(single["metrics"]["test"]["acc"], abs=1e-9)
    assert info["metrics"]["test"]["log_loss"] == pytest.approx(
        single["metrics"]["test"]["log_loss"], abs=1e-5
    )
    keys = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)  # saved from the model inside DDP
    assert proc.stdout.count("epoch 3/3") == 1 and proc.stdout.count("test accuracy") == 1  # process 0 only
