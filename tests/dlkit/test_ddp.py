"""The same fit under torchrun with 2 CPU processes (gloo) and in one process: the same curves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from _ddp_fit import run
from _train_setup import HERE, subprocess_env

pytestmark = [
    pytest.mark.slow,  # 15 to 25 s on 2 busy CPU cores: three processes start torch
    pytest.mark.skipif(
        not torch.distributed.is_available() or sys.platform == "win32",
        reason="needs torch.distributed with gloo on Linux or macOS",
    ),
]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*launch, str(HERE / "_ddp_fit.py"), str(ddp_dir)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    saved = [json.loads((ddp_dir / f"history_rank{r}.json").read_text()) for r in (0, 1)]
    rank0, rank1 = (s["rows"] for s in saved)
    for s in saved:  # cleanup_distributed destroyed the gloo group while Python was alive (no SIGABRT)
        assert s["threads"]["after_cleanup"] <= s["threads"]["before_setup"], s["threads"]
    single = run(str(single_dir), single=True)

    assert len(rank0) == len(single) == 3
    for r0, r1, one in zip(rank0, rank1, single, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert r0[key] == r1[key], f"ranks disagree on {key}: the metrics are not all-reduced"
            assert r0[key] == pytest.approx(one[key], abs=1e-4), key
    assert rank0[-1]["val_loss"] < 0.5 * rank0[0]["train_loss"]  # it did learn

    assert len((ddp_dir / "metrics.csv").read_text().splitlines()) == 1 + 3  # written once, by rank 0
    keys = torch.load(ddp_dir / "ckpt.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)  # saved from the model inside DDP
    assert proc.stdout.count("epoch 3/3") == 1  # only rank 0 prints
