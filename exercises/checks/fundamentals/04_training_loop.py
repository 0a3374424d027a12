"""Checks for fundamentals/04 (the training loop): each runs the learner's loop on a tiny model and compares
the resulting weights, or metrics, with a reference loop written here in plain PyTorch (float64)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.exercises import CheckFailed, expect, expect_close, expect_no_grad


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _dropout_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).double().train()


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, steps: range) -> None:
    for step in steps:
        X, y = batches[step]
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()


def _resumed(
    after_3: tuple, batches: list, *, optimizer_state=True, rng=True, steps=range(3, 6)
) -> nn.Module:
    """What a restart from the state after 3 steps gives when it restores only some of it."""
    model = _dropout_mlp(7)
    model.load_state_dict(after_3[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    if optimizer_state:
        optimizer.load_state_dict(copy.deepcopy(after_3[1]))  # loading shares its tensors
    torch.manual_seed(12345)
    if rng:
        torch.set_rng_state(after_3[2])
    _steps(model, optimizer, batches, steps)
    return model


_RESUME_MISTAKES = {
    "does not restore torch's RNG state (torch.set_rng_state(checkpoint['rng'])), so its dropout masks "
    "differ from those of the uninterrupted run": {"rng": False},
    "does not restore the optimizer (optimizer.load_state_dict(checkpoint['optimizer'])): Adam starts "
    "again with empty running averages": {"optimizer_state": False},
    "starts again from step 0 instead of going on from the checkpoint's step": {"steps": range(6)},
}


def check_train_resumable(train_resumable) -> None:
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
        for _ in range(6)
    ]
    reference = _dropout_mlp(0)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    torch.manual_seed(1)  # the dropout masks
    _steps(reference, optimizer, batches, range(3))
    after_3 = copy.deepcopy((reference.state_dict(), optimizer.state_dict(), torch.get_rng_state()))
    _steps(reference, optimizer, batches, range(3, 6))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "straight.pt"
        model = _dropout_mlp(0)
        torch.manual_seed(1)
        train_resumable(model, torch.optim.Adam(model.parameters(), lr=0.01), batches, path, 6)
        diff = _max_diff(model, reference)
        expect(
            diff < 1e-10,
            f"6 steps with no checkpoint to resume from end {diff:.2g} away from the "
            "reference loop's weights: one step per batch: zero_grad, F.cross_entropy, backward, step",
        )
        expect(
            path.is_file(),
            f"train_resumable saved nothing to {path.name}: torch.save(checkpoint, path) after every step",
        )
        try:
            checkpoint = torch.load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the learner's to fix
            raise CheckFailed(
                f"the checkpoint does not load with torch.load(path, weights_only=True) "
                f"({type(exc).__name__}): save only tensors, numbers, dicts"
            ) from None
        missing = {"model", "optimizer", "step", "rng"} - set(checkpoint)
        expect(
            not missing,
            f"the checkpoint lacks {sorted(missing)}: save a dict with the keys "
            "'model', 'optimizer', 'step' and 'rng'",
        )

        path = Path(tmp) / "killed.pt"
        model = _dropout_mlp(0)
        torch.manual_seed(1)
        train_resumable(model, torch.optim.Adam(model.parameters(), lr=0.01), batches, path, 3)  # "killed"
        model = _dropout_mlp(7)  # a new process: other initial weights, a fresh Adam, other random numbers
        torch.manual_seed(12345)
        train_resumable(model, torch.optim.Adam(model.parameters(), lr=0.01), batches, path, 6)
        diff = _max_diff(model, reference)
        for mistake, kwargs in _RESUME_MISTAKES.items():
            expect(
                _max_diff(model, _resumed(after_3, batches, **kwargs)) > 1e-10,
                f"3 steps, then a restart that resumes to 6, end {diff:.2g} away from 6 steps in one go: "
                f"the resumed run {mistake}",
            )
        expect(
            diff < 1e-10,
            f"3 steps, then a restart that resumes to 6, end {diff:.2g} away from 6 steps "
            "in one go: when path exists, go on from its saved step (not from 0) and restore all three "
            "of the model's weights, the optimizer's state (Adam's averages) and torch's RNG state "
            "(the dropout masks) before the next step",
        )


def check_accumulated_step(accumulated_step) -> None:
    g = torch.Generator().manual_seed(2)
    X, y = torch.randn(10, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    torch.manual_seed(3)
    start = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    reference = copy.deepcopy(start)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    F.cross_entropy(reference(X), y).backward()  # one step on the whole batch of 10
    optimizer.step()

    model = copy.deepcopy(start)
    accumulated_step(model, torch.optim.SGD(model.parameters(), lr=0.5), X, y, 4)  # micro-batches 4, 4, 2
    diff = _max_diff(model, reference)
    expect(
        diff < 1e-10,
        f"with micro-batches of 4, 4 and 2 examples, the weights end {diff:.2g} away from "
        "one step on all 10: weight each micro-batch's mean loss by its share, len(X_i) / len(X), call "
        "backward on each, and optimizer.step() once at the end",
    )

    model = copy.deepcopy(start)
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # left over from an earlier step
    accumulated_step(model, torch.optim.SGD(model.parameters(), lr=0.5), X, y, 4)
    diff = _max_diff(model, reference)
    expect(
        diff < 1e-10,
        f"when the parameters still hold gradients from an earlier step, the weights end "
        f"{diff:.2g} away from the reference: call optimizer.zero_grad() once, before the first "
        "micro-batch",
    )


def check_evaluate_in_batches(evaluate_in_batches) -> None:
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    model = model.double().train()
    with torch.no_grad():
        for _ in range(3):  # running statistics unlike a batch's own
            model(2 + torch.randn(16, 6, generator=g, dtype=torch.float64))
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        logits = reference(X)
    expected_loss = F.cross_entropy(logits, y).item()
    expected_acc = (logits.argmax(dim=1) == y).double().mean().item()

    grad_enabled = []
    model.register_forward_hook(lambda module, args, out: grad_enabled.append(torch.is_grad_enabled()))
    running_mean = model[1].running_mean.clone()
    result = evaluate_in_batches(model, X, y, 4)
    expect(
        isinstance(result, tuple) and len(result) == 2,
        "evaluate_in_batches should return a tuple (loss, accuracy)",
    )
    loss, acc = result
    expect_no_grad(loss, "the loss evaluate_in_batches returns")
    expect(
        torch.equal(model[1].running_mean, running_mean),
        "evaluate_in_batches changed batch norm's "
        "running mean: call model.eval() before the forward passes (it also turns dropout off)",
    )
    expect(
        not any(grad_enabled),
        "evaluate_in_batches ran the model with gradients recorded: wrap the "
        "loop in torch.no_grad() (or decorate the function with @torch.no_grad())",
    )
    expect_close(
        loss,
        expected_loss,
        "the mean loss over 10 examples in batches of 4, 4 and 2 (weight each batch's mean by its size)",
        rtol=1e-6,
    )
    expect_close(
        acc, expected_acc, "the accuracy (the fraction of the 10 whose argmax is the label)", rtol=1e-6
    )
    expect(
        model.training,
        "evaluate_in_batches left the model in eval mode: remember model.training "
        "before, and put it back at the end (model.train(was_training)) for the training loop",
    )
