"""`train` under torchrun with 2 CPU processes (gloo): the processes share each global batch, and only
process 0 prints, writes the run folder and scores the test split."""

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
from PIL import Image

pytestmark = [
    pytest.mark.slow,  # 20 to 40 s on 2 busy cores: three processes start torch
    pytest.mark.skipif(
        not torch.distributed.is_available() or sys.platform == "win32",
        reason="needs torch.distributed with gloo on Linux or macOS",
    ),
]


def squares(root: Path) -> Path:
    """train/ and test/ of 20x20 PNGs: class "left" or "right" by where a bright square is."""
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 64), ("test", 16)):
        for label, name in enumerate(("left", "right")):
            (root / split / name).mkdir(parents=True)
            for i in range(n // 2):
                pixels = torch.randint(0, 60, (20, 20, 3), generator=g, dtype=torch.uint8)
                top, left = int(torch.randint(2, 10, (1,), generator=g)), 2 + 10 * label
                pixels[top : top + 7, left : left + 7] = 230
                Image.fromarray(pixels.numpy()).save(root / split / name / f"{i}.png")
    return root


def test_train_under_torchrun_on_two_cpu_processes(tmp_path: Path) -> None:
    images = squares(tmp_path / "images")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    flags = [
        "--image-folder",
        str(images),
        "--image-size",
        "16",
        "--num-epochs",
        "3",
        "--widths",
        "8",
        "16",
        "16",
    ]
    flags += ["--batch-size", "16", "--val-fraction", "0.25", "--device", "cpu", "--run-name", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0", "DLKIT_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run(
        [*launch, "-m", "projects.image_classifier", "train", *flags],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr  # a gloo rank aborting at teardown: report it, never hide
    run = tmp_path / "runs" / "image_classifier" / "ddp"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    # 48 training images in global batches of 16: 3 steps per epoch, each process taking 8 of each batch
    assert [int(r["step"]) for r in rows] == [3, 6, 9] and [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert proc.stdout.count("epoch 3/3") == 1 and proc.stdout.count("test accuracy") == 1  # process 0 only
    info = json.loads((run / "model_info.json").read_text())
    assert {"val_acc", "test_acc", "test_acc_tta"} <= set(info["metrics"])
    keys = torch.load(run / "checkpoint.pt", weights_only=True)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)  # saved from the model inside DDP
