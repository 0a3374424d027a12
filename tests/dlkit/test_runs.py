"""The run folder: names, atomic writes, load_trained, and the errors a person can act on."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dlkit.checkpoint import save_checkpoint
from dlkit.errors import UserError
from dlkit.runs import RunFolder, RunNotFoundError, atomic_write, load_trained, read_json, write_json


def test_run_folder_names_and_the_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DLKIT_RUNS", str(tmp_path))
    run = RunFolder.of("image_classifier", "cifar10-resnet")
    assert run.path == tmp_path / "image_classifier" / "cifar10-resnet"
    assert RunFolder.of("x", "a", runs_dir=tmp_path / "elsewhere").path == tmp_path / "elsewhere" / "a"
    assert (run.config_path.name, run.metrics_path.name, run.checkpoint.name) == (
        "config.json", "metrics.csv", "checkpoint.pt",
    )  # fmt: skip
    assert (run.info_path.name, run.release.name) == ("model_info.json", "release")
    for bad in ("", "../up", "a/b", ".."):
        with pytest.raises(UserError, match="--run-name"):
            RunFolder.of("x", bad)
    assert not RunFolder(tmp_path, checkpoint=None).keeps_checkpoint


def test_atomic_write_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.json", '{"v": 1}')
    assert json.loads(path.read_text()) == {"v": 1}

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"v": 1}  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]  # no temp file left
    atomic_write(path, b"\x00\x01", durable=True)
    assert path.read_bytes() == b"\x00\x01"


def test_json_files_refuse_nan_and_name_corrupt_files(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "m.json", {"loss": float("nan")})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RunNotFoundError, match="bad.json is corrupt"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(RunNotFoundError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_load_trained_rebuilds_the_model_from_model_info(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(RunNotFoundError, match="does not exist: train a model first"):
        load_trained(run.path, lambda info: nn.Linear(2, 2))
    run.create()
    with pytest.raises(RunNotFoundError, match="no model_info.json or checkpoint.pt"):
        run.require_trained()
    model = nn.Linear(3, 2)
    save_checkpoint(run.checkpoint, model=model, epoch=1)
    run.write_info({"in": 3, "out": 2})
    run.save_config({"lr": 0.1})
    loaded, info = load_trained(run.path, lambda info: nn.Linear(info["in"], info["out"]))
    assert info == {"in": 3, "out": 2} and not loaded.training
    assert torch.equal(loaded.weight, model.weight) and run.read_config() == {"lr": 0.1}
    logger = run.metrics_logger([{"step": 1, "loss": 0.5}])
    logger.log({"step": 2, "loss": 0.25})
    assert run.metrics_path.read_text().splitlines() == ["step,loss", "1,0.5", "2,0.25"]
