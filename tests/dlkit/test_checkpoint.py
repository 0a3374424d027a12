"""Checkpoints: a weights_only round trip restores everything, a killed writer harms nothing."""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from _train_setup import HERE, mlp, subprocess_env
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint, unwrap_model


def _random_draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def _trained_state(seed: int = 0):
    """A model, Adam (with state) and a StepLR that have taken two steps."""
    torch.manual_seed(seed)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(2):
        model(torch.randn(8, 10)).square().mean().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_round_trip_restores_model_optimizer_scheduler_and_rng(tmp_path):
    model, optimizer, scheduler = _trained_state()
    path = save_checkpoint(
        tmp_path / "ckpt.pt",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        epoch=3,
        history=[{"epoch": 1, "train_loss": 0.5}],
        config={"lr": 0.1, "sizes": [32, 16], "name": None},
    )
    expected_draws = _random_draws()  # what the generators give right after saving

    raw = torch.load(path, weights_only=True)  # plain types only: no pickled objects
    assert raw["epoch"] == 3 and raw["config"]["sizes"] == [32, 16]

    fresh_model, fresh_optimizer, fresh_scheduler = _trained_state(seed=1)
    state = load_checkpoint(path, model=fresh_model, optimizer=fresh_optimizer, scheduler=fresh_scheduler)
    draws = _random_draws()
    assert draws[:2] == expected_draws[:2]
    assert torch.equal(draws[2], expected_draws[2])
    for p, q in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    adam = fresh_optimizer.state_dict()["state"][0]
    assert torch.equal(adam["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert state["history"] == [{"epoch": 1, "train_loss": 0.5}]


def test_objects_that_need_pickle_are_refused(tmp_path):
    with pytest.raises(TypeError, match="Namespace"):
        save_checkpoint(tmp_path / "c.pt", model=nn.Linear(2, 2), epoch=0, config=argparse.Namespace(lr=1))
    with pytest.raises(TypeError, match="ndarray"):
        save_checkpoint(tmp_path / "c.pt", model=nn.Linear(2, 2), epoch=0, mean=np.zeros(3))
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_writer_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "ckpt.pt"
    model = nn.Linear(4, 2)
    save_checkpoint(path, model=model, epoch=1)
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "_train_save_big.py"), str(path)], env=subprocess_env()
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".ckpt.pt.*.tmp")):  # the writer has started its temporary file
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL

    state = load_checkpoint(path)  # still the first checkpoint, whole
    assert state["epoch"] == 1 and "big" not in state
    assert torch.equal(state["model"]["weight"], model.weight)


def test_unwrap_model_strips_compile_and_data_parallel(tmp_path):
    model = mlp()
    wrapped = nn.DataParallel(torch.compile(model))  # compile is lazy: nothing is compiled here
    assert unwrap_model(wrapped) is model
    save_checkpoint(tmp_path / "c.pt", model=wrapped, epoch=0)
    keys = torch.load(tmp_path / "c.pt", weights_only=True)["model"].keys()
    assert set(keys) == set(model.state_dict().keys())
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)


def test_a_truncated_checkpoint_is_an_error_that_names_the_file(tmp_path):
    from dlkit.checkpoint import CheckpointError

    model, optimizer, scheduler = _trained_state()
    path = save_checkpoint(tmp_path / "checkpoint.pt", model=model, epoch=1)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{path} is truncated or corrupt"):
        load_checkpoint(path, model=mlp())
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_of_another_model_says_so(tmp_path):
    from dlkit.checkpoint import CheckpointError

    path = save_checkpoint(tmp_path / "checkpoint.pt", model=mlp(), epoch=1)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, model=nn.Linear(3, 3))


def test_the_next_save_removes_temp_files_of_killed_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".checkpoint.pt.{dead_pid}.tmp"
    stale.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".checkpoint.pt.{os.getppid()}.tmp"  # a running writer's file stays
    alive.write_bytes(b"being written")
    save_checkpoint(tmp_path / "checkpoint.pt", model=mlp(), epoch=1)
    assert not stale.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "checkpoint.pt"])
