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
from dlkit.runs import RunFolder
from dlkit.train import (
    Budget,
    Callback,
    Evaluation,
    History,
    Selection,
    evaluate,
    fit,
    make_loader,
    resolve_amp_dtype,
    train_loop,
    train_one_epoch,
)


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
    assert set(history.last) == {
        "step",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
    }
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


def test_selection_modes():
    accuracy_kind = Selection("val_acc")
    assert accuracy_kind.better(0.7, 0.6) and not accuracy_kind.better(0.6, 0.7)  # "acc": higher wins
    assert Selection("val_loss").better(0.5, 0.6) and Selection("val_loss").better(9.0, None)
    assert Selection("score", mode="max").better(2.0, 1.0)


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
    # each row reports the lr of the epoch's last step
    assert history.column("lr") == pytest.approx([0.1 * 0.9 ** (num_batches * e + 11) for e in range(3)])
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
    assert set(history.last) == {"step", "epoch", "train_loss", "val_loss", "lr", "seconds"}
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


# --- train_loop: budgets, evaluation schedules, keep-best, endless data --------------------------------


def _loop(data, budget, evaluation=None, **kwargs):
    torch.manual_seed(0)
    model = kwargs.pop("model", None) or mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=kwargs.pop("lr", 0.1))
    state = train_loop(
        model, optimizer, data, loss_fn=nn.CrossEntropyLoss(), device="cpu", budget=budget,
        evaluation=evaluation, amp=False, verbose=False, **kwargs,
    )  # fmt: skip
    return state, model, optimizer


def _val_loss(val):
    return lambda model: {
        "val_loss": evaluate(model, nn.CrossEntropyLoss(), [val.tensors], torch.device("cpu"))["loss"]
    }


def test_a_step_budget_and_evaluations_every_n_steps():
    train, val = easy_classification()
    loader = make_loader(train, 32, shuffle=True)  # 12 batches per epoch
    state, _, _ = _loop(loader, Budget(steps=30), Evaluation(_val_loss(val), every_steps=8))
    assert state.step == 30 and state.epoch == 2  # two whole passes, then 6 steps of the third
    assert [r["step"] for r in state.rows] == [8, 16, 24, 30]  # and one at the end of the budget
    assert [r["epoch"] for r in state.rows] == [0, 1, 2, 2]


def test_fractional_epochs_are_counted_in_steps():
    train, val = easy_classification()
    state, _, _ = _loop(make_loader(train, 32, shuffle=True), Budget(epochs=1.5), Evaluation(_val_loss(val)))
    assert state.step == 18 and [r["step"] for r in state.rows] == [12, 18]  # an epoch, then the half


def test_data_given_as_a_function_of_the_epoch_counts_its_epochs():
    train, val = easy_classification()
    loader = make_loader(train, 32, shuffle=True)  # 12 batches per epoch
    seen = []

    def batches(epoch):  # e.g. re-augmented data each epoch
        seen.append(epoch)
        return loader

    # the budget and the evaluations fall on each epoch's last step: that epoch is complete
    state, _, _ = _loop(batches, Budget(steps=24), Evaluation(_val_loss(val), every_steps=12))
    assert seen == [0, 1] and state.step == 24 and state.epoch == 2
    assert [(r["step"], r["epoch"]) for r in state.rows] == [(12, 1), (24, 2)]


def test_endless_data_needs_a_step_or_time_budget_and_the_schedule_follows_it():
    train, val = easy_classification()
    x, y = train.tensors

    def windows():  # random batches forever, as a language model draws them
        while True:
            idx = torch.randint(len(y), (32,))
            yield x[idx], y[idx]

    lrs = []

    class Watch(Callback):
        def on_step(self, state):
            lrs.append(optimizer_lr[0].param_groups[0]["lr"])

    optimizer_lr = []
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer_lr.append(opt)
    state = train_loop(
        model, opt, windows(), loss_fn=nn.CrossEntropyLoss(), device="cpu", budget=Budget(steps=20),
        evaluation=Evaluation(_val_loss(val), every_steps=10), schedule=lambda step, used: 1.0 - used,
        callbacks=[Watch()], verbose=False,
    )  # fmt: skip
    assert state.step == 20 and state.epoch == 0 and [r["step"] for r in state.rows] == [10, 20]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 * (1 - 19 / 20))  # cosine-free decay
    with pytest.raises(ValueError, match="Budget needs"):
        Budget()


def test_a_time_budget_stops_the_run_and_evaluation_is_off_the_clock():
    train, val = easy_classification()
    slow_evals = []

    def slow_val(model):
        import time

        time.sleep(0.3)  # an evaluation that takes longer than the whole budget
        slow_evals.append(1)
        return _val_loss(val)(model)

    state, _, _ = _loop(
        make_loader(train, 32, shuffle=True), Budget(seconds=0.5), Evaluation(slow_val, every_seconds=0.1)
    )
    assert 0.5 <= state.seconds < 1.0  # training time only: the evaluations took 0.3 s each
    assert len(slow_evals) >= 3 and state.rows[-1]["seconds"] == pytest.approx(state.seconds, abs=1e-3)


class _Sabotage(Callback):
    """After the second evaluation, scale every weight by a large random factor: later ones are worse."""

    def __init__(self, model):
        self.model = model

    def on_eval(self, state, row):
        if len(state.rows) == 2:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(torch.randn_like(p) * 30)


def test_keep_best_ends_on_the_weights_of_the_best_evaluation(tmp_path):
    train, val = easy_classification()
    model = mlp()
    run = RunFolder(tmp_path)
    state, model, _ = _loop(
        make_loader(train, 32, shuffle=True), Budget(epochs=4), Evaluation(_val_loss(val)), model=model,
        selection=Selection("val_loss", keep_best=True), callbacks=[_Sabotage(model)], run=run, lr=0.01,
    )  # fmt: skip
    losses = [r["val_loss"] for r in state.rows]
    assert len(losses) == 4 and min(losses[2:]) > losses[1]  # by design, the best is the second
    assert state.best_step == state.rows[1]["step"]
    assert _val_loss(val)(model)["val_loss"] == pytest.approx(losses[1], rel=1e-6)  # its weights
    saved = mlp()
    load_checkpoint(run.checkpoint, model=saved, restore_rng=False)  # and the checkpoint holds them
    assert _val_loss(val)(saved)["val_loss"] == pytest.approx(losses[1], rel=1e-6)


def test_a_resumed_endless_run_equals_an_uninterrupted_one(tmp_path):
    train, val = easy_classification()
    x, y = train.tensors

    def windows():
        while True:
            idx = torch.randint(len(y), (16,))
            yield x[idx], y[idx]

    class StopAt(Callback):
        def on_eval(self, state, row):
            return state.step == 10  # as if killed after the checkpoint of step 10

    def run(folder, steps, resume=False, callbacks=()):
        torch.manual_seed(0)
        model = mlp(dropout=0.2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        state = train_loop(
            model, opt, windows(), loss_fn=nn.CrossEntropyLoss(), device="cpu", budget=Budget(steps=steps),
            evaluation=Evaluation(_val_loss(val), every_steps=5), schedule=lambda s, used: 1 - 0.5 * used,
            run=RunFolder(folder), resume=resume, callbacks=callbacks, verbose=False,
        )  # fmt: skip
        return state, model

    whole, whole_model = run(tmp_path / "whole", 20)
    first, _ = run(tmp_path / "cut", 20, callbacks=[StopAt()])
    assert first.step == 10 and first.stopped_early
    # A new process would start with fresh RNGs: the checkpoint restores them. The run must not stop
    # again at step 10, so resume without the callback, from a checkpoint saved before it stopped.
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    ckpt["loop"]["stopped_early"] = False
    torch.save(ckpt, tmp_path / "cut" / "checkpoint.pt")
    resumed, resumed_model = run(tmp_path / "cut", 20, resume=True)
    assert [r["step"] for r in resumed.rows] == [5, 10, 15, 20]
    for a, b in zip(resumed.rows, whole.rows, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    for a, b in zip(resumed_model.parameters(), whole_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
