"""fit, train_one_epoch and evaluate on tiny problems: learning, resuming, schedules, clipping, AMP."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest
import torch
from _train_resume import run as run_resume_script
from _train_setup import HERE, easy_classification, mlp, subprocess_env
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.metrics import CSVLogger, accuracy
from dlkit.train import EarlyStopping, History, evaluate, fit, make_loader, resolve_amp_dtype, train_one_epoch


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on two shared cores spend their time waiting for each other on these tiny models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit(num_epochs=3, lr=1e-2, batch_size=32, **kwargs):
    torch.manual_seed(0)
    train, val = easy_classification()
    model = kwargs.pop("model", None) or mlp()
    optimizer = kwargs.pop("optimizer", None) or torch.optim.Adam(model.parameters(), lr=lr)
    history = fit(
        model,
        optimizer,
        make_loader(train, batch_size, shuffle=True),
        make_loader(val, 128, shuffle=False),
        loss_fn=nn.CrossEntropyLoss(),
        num_epochs=num_epochs,
        device="cpu",
        verbose=False,
        **kwargs,
    )
    return history, model, optimizer


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fit_learns_an_easy_problem(tmp_path):
    history, model, _ = _fit(num_epochs=8, run_dir=tmp_path, amp=False)
    assert [r["epoch"] for r in history.rows] == list(range(1, 9))
    assert set(history.last) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert history.last["train_loss"] < 0.5 * history.rows[0]["train_loss"]
    assert history.best("val_acc", mode="max")["val_acc"] >= 0.9
    assert history.column("val_loss") == [r["val_loss"] for r in history.rows]
    rows = _csv_rows(tmp_path / "metrics.csv")
    assert len(rows) == 8 and float(rows[-1]["val_acc"]) == pytest.approx(history.last["val_acc"])
    _, val = easy_classification()
    again = evaluate(model, nn.CrossEntropyLoss(), DataLoader(val, batch_size=7), torch.device("cpu"))
    assert again["loss"] == pytest.approx(history.last["val_loss"], rel=1e-6)
    assert again["acc"] == pytest.approx(accuracy(model(val.tensors[0]), val.tensors[1]))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_run_resumes_to_the_same_result(tmp_path):
    """SIGKILL after epoch 2, resume in a fresh process: the same history and weights as one run."""
    script, env = str(HERE / "_train_resume.py"), subprocess_env()
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    first = subprocess.run([sys.executable, script, str(killed), "--kill-after", "2"], env=env)
    assert first.returncode == -signal.SIGKILL
    assert len(_csv_rows(killed / "metrics.csv")) == 2 and not (killed / "history.json").exists()
    subprocess.run([sys.executable, script, str(killed), "--resume"], env=env, check=True)
    resumed = json.loads((killed / "history.json").read_text())
    expected = json.loads(json.dumps(run_resume_script(str(whole))))  # in this process, uninterrupted
    assert len(resumed) == len(expected) == 4
    for got, want in zip(resumed, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want.keys() - {"seconds"}:
            assert got[key] == pytest.approx(want[key], abs=1e-6), key
    rows = _csv_rows(killed / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    a, b = (load_checkpoint(d / "ckpt.pt", restore_rng=False) for d in (killed, whole))
    assert a["epoch"] == b["epoch"] == 4 and a["config"] == {"lr": 1e-2, "hidden": [32]}
    for key, value in b["model"].items():
        torch.testing.assert_close(a["model"][key], value, rtol=0, atol=1e-6)


def _frozen_fit(num_epochs, **kwargs):
    """The optimizer holds a parameter the model does not use: the model never changes."""
    dummy = nn.Parameter(torch.zeros(1))
    return _fit(num_epochs=num_epochs, optimizer=torch.optim.SGD([dummy], lr=0.1), **kwargs)


def test_early_stopping_stops_and_a_resume_does_not_restart(tmp_path):
    history, _, _ = _frozen_fit(20, early_stopping_patience=2, checkpoint_path=tmp_path / "c.pt")
    assert len(history.rows) == 3  # epoch 1 sets the best, 2 and 3 do not improve on it
    resumed, _, _ = _frozen_fit(20, early_stopping_patience=2, checkpoint_path=tmp_path / "c.pt", resume=True)
    assert resumed.rows == history.rows


def test_early_stopping_modes():
    stopper = EarlyStopping(patience=2, mode="max")
    assert [stopper.step(v, i) for i, v in enumerate([0.5, 0.6, 0.6, 0.7, 0.6, 0.65], 1)] == [
        False, False, False, False, False, True,
    ]  # fmt: skip
    assert stopper.best == 0.7 and stopper.best_epoch == 4


def test_scheduler_per_epoch_per_batch_and_on_plateau():
    sgd = lambda model: torch.optim.SGD(model.parameters(), lr=0.1)  # noqa: E731
    model = mlp()
    optimizer = sgd(model)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history, _, _ = _fit(3, model=model, optimizer=optimizer, scheduler=step)
    assert history.column("lr") == pytest.approx([0.1, 0.05, 0.025])

    model = mlp()
    optimizer = sgd(model)
    exponential = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    history, _, _ = _fit(
        3, model=model, optimizer=optimizer, scheduler=exponential, scheduler_interval="batch"
    )
    num_batches = 384 // 32
    assert history.column("lr") == pytest.approx([0.1 * 0.9 ** (num_batches * e) for e in range(3)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9 ** (num_batches * 3))

    dummy = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    history, _, _ = _fit(3, optimizer=optimizer, scheduler=plateau)  # val_loss never improves
    assert history.column("lr") == pytest.approx([0.1, 0.1, 0.05])


def test_gradient_clipping_limits_the_norm():
    def run(clip):
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        norms = []

        def record(opt, args, kwargs):  # runs inside optimizer.step(), after clipping
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

        optimizer.register_step_pre_hook(record)
        _fit(1, model=model, optimizer=optimizer, clip_grad_norm=clip, amp=False)
        return norms

    assert max(run(None)) > 0.05
    assert max(run(0.05)) <= 0.05 * (1 + 1e-5)


@pytest.mark.parametrize(("amp", "dtype"), [(True, torch.bfloat16), (False, torch.float32)])
def test_amp_autocasts_to_bf16_on_cpu(amp, dtype):
    model = mlp()
    seen = set()
    model[0].register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    history, _, _ = _fit(1, model=model, amp=amp)
    assert seen == {dtype}
    assert history.last["train_loss"] == history.last["train_loss"]  # not nan
    assert resolve_amp_dtype(False, torch.device("cpu")) is None
    assert resolve_amp_dtype(True, torch.device("cpu")) == torch.bfloat16


def test_tensorboard_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit(2, run_dir=tmp_path, tensorboard=True)
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert {"train_loss", "val_acc", "lr"} <= set(accumulator.Tags()["scalars"])
    assert [e.step for e in accumulator.Scalars("val_loss")] == [1, 2]


def test_regression_reports_loss_only():
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    data = TensorDataset(X, X.sum(dim=1, keepdim=True))  # (B, 1) float targets: no accuracy
    model = nn.Linear(3, 1)
    history = fit(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        make_loader(data, 16, shuffle=True),
        make_loader(data, 64, shuffle=False),
        loss_fn=nn.MSELoss(),
        num_epochs=5,
        device="cpu",
        amp=False,
        verbose=False,
    )
    assert set(history.last) == {"epoch", "train_loss", "val_loss", "lr", "seconds"}
    assert history.last["val_loss"] < 0.1 * history.rows[0]["train_loss"]


def test_accuracy_and_csv_logger(tmp_path):
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="int64"):
        accuracy(logits, torch.tensor([0.0, 1.0, 1.0]))
    logger = CSVLogger(tmp_path / "m.csv")
    logger.log({"epoch": 1, "loss": 0.5})
    logger.log({"epoch": 2, "loss": 0.25, "extra": 1})  # the first row fixed the columns
    CSVLogger(tmp_path / "m.csv").log({"loss": 0.125, "epoch": 3})  # appends under the same header
    assert (tmp_path / "m.csv").read_text().splitlines() == ["epoch,loss", "1,0.5", "2,0.25", "3,0.125"]
    CSVLogger(tmp_path / "m.csv", append=False).log({"a": 1})
    assert (tmp_path / "m.csv").read_text().splitlines() == ["a", "1"]
    assert History([{"x": 2.0}, {"x": 1.0}]).best("x")["x"] == 1.0


def test_float16_with_grad_scaler(tmp_path):
    """The float16 path (older GPUs) runs on CPU too: autocast fp16 plus a GradScaler, saved and restored."""
    torch.manual_seed(0)
    train, _ = easy_classification(n=128)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    loader = DataLoader(train, batch_size=32)
    loss_fn = nn.CrossEntropyLoss()
    result = train_one_epoch(
        model, loss_fn, optimizer, loader, torch.device("cpu"), 1, amp_dtype=torch.float16, scaler=scaler
    )
    assert 0 < result["loss"] < 2 and 0 <= result["acc"] <= 1
    save_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, scaler=scaler, epoch=1)
    restored = torch.amp.GradScaler("cpu")
    load_checkpoint(tmp_path / "c.pt", scaler=restored, restore_rng=False)
    assert restored.get_scale() == scaler.get_scale()


def test_monitoring_val_metrics_needs_a_val_loader():
    model = mlp()
    with pytest.raises(ValueError, match="val_loader"):
        fit(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            [],
            loss_fn=nn.CrossEntropyLoss(),
            num_epochs=1,
            device="cpu",
            early_stopping_patience=2,
        )


def test_tensor_batches_cover_every_example_once_in_a_new_order():
    from dlkit.train import TensorBatches

    X, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = TensorBatches(X, y, 4, shuffle=True)
    assert len(batches) == 3 and len(TensorBatches(X, y, 4, drop_last=True)) == 2
    epochs = [torch.cat([b for _, b in batches]) for _ in range(2)]
    assert all(sorted(e.tolist()) == list(range(10)) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])
    first = next(iter(TensorBatches(X, y, 4, augment=lambda x: -x)))
    assert torch.equal(first[0], -X[:4]) and torch.equal(first[1], y[:4])  # unshuffled, augmented
    with pytest.raises(ValueError, match="10 examples"):
        TensorBatches(X, y[:5], 4)
