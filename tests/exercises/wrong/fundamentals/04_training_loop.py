"""Plausible wrong answers to fundamentals/04's exercises: each must make its check fail."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def _train(model, optimizer, batches, path, start, num_steps):
    for step in range(start, num_steps):
        X, y = batches[step]
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}
        torch.save({**checkpoint, "rng": torch.get_rng_state()}, path)


def resume_without_rng(model, optimizer, batches, path, num_steps):
    start = 0
    if Path(path).exists():
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start = checkpoint["step"]  # the dropout masks after the restart are new ones
    _train(model, optimizer, batches, path, start, num_steps)


def resume_without_optimizer(model, optimizer, batches, path, num_steps):
    start = 0
    if Path(path).exists():
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])  # Adam starts again with empty averages
        torch.set_rng_state(checkpoint["rng"])
        start = checkpoint["step"]
    _train(model, optimizer, batches, path, start, num_steps)


def resume_from_step_zero(model, optimizer, batches, path, num_steps):
    if Path(path).exists():
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
    _train(model, optimizer, batches, path, 0, num_steps)  # repeats the steps already done


def resume_pickles_a_generator(model, optimizer, batches, path, num_steps):
    start = 0
    if Path(path).exists():
        checkpoint = torch.load(path, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        start = checkpoint["step"]
    for step in range(start, num_steps):
        X, y = batches[step]
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}
        torch.save({**state, "rng": torch.get_rng_state(), "path": Path(path)}, path)  # not a plain type


def accumulate_unscaled(model, optimizer, X, y, micro_batch_size):
    optimizer.zero_grad()
    for X_i, y_i in zip(X.split(micro_batch_size), y.split(micro_batch_size), strict=True):
        F.cross_entropy(model(X_i), y_i).backward()  # three means added up: three times the gradient
    optimizer.step()


def accumulate_divided_by_count(model, optimizer, X, y, micro_batch_size):
    optimizer.zero_grad()
    chunks = list(zip(X.split(micro_batch_size), y.split(micro_batch_size), strict=True))
    for X_i, y_i in chunks:
        (F.cross_entropy(model(X_i), y_i) / len(chunks)).backward()  # right only if all chunks are equal
    optimizer.step()


def accumulate_stale_gradients(model, optimizer, X, y, micro_batch_size):
    for X_i, y_i in zip(X.split(micro_batch_size), y.split(micro_batch_size), strict=True):
        (F.cross_entropy(model(X_i), y_i) * len(y_i) / len(y)).backward()
    optimizer.step()  # no zero_grad: last step's gradients are added in


def accumulate_step_each(model, optimizer, X, y, micro_batch_size):
    for X_i, y_i in zip(X.split(micro_batch_size), y.split(micro_batch_size), strict=True):
        optimizer.zero_grad()
        (F.cross_entropy(model(X_i), y_i) * len(y_i) / len(y)).backward()
        optimizer.step()  # three small steps, not one accumulated step


def _evaluate(model, X, y, batch_size):
    loss_sum, correct = 0.0, 0
    for X_i, y_i in zip(X.split(batch_size), y.split(batch_size), strict=True):
        logits = model(X_i)
        loss_sum += F.cross_entropy(logits, y_i, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y_i).sum().item()
    return loss_sum / len(y), correct / len(y)


@torch.no_grad()
def evaluate_without_eval(model, X, y, batch_size):
    return _evaluate(model, X, y, batch_size)  # dropout on, batch norm on batch statistics


def evaluate_without_no_grad(model, X, y, batch_size):
    was_training = model.training
    model.eval()
    result = _evaluate(model, X, y, batch_size)  # records a graph for every batch
    model.train(was_training)
    return result


@torch.no_grad()
def evaluate_mean_of_means(model, X, y, batch_size):
    was_training = model.training
    model.eval()
    losses, accs = [], []
    for X_i, y_i in zip(X.split(batch_size), y.split(batch_size), strict=True):
        logits = model(X_i)
        losses.append(F.cross_entropy(logits, y_i).item())
        accs.append((logits.argmax(dim=1) == y_i).double().mean().item())
    model.train(was_training)
    return sum(losses) / len(losses), sum(accs) / len(accs)  # the last, smaller batch counts as much


@torch.no_grad()
def evaluate_stays_in_eval(model, X, y, batch_size):
    model.eval()
    return _evaluate(model, X, y, batch_size)


WRONG = {
    "train_resumable": [
        resume_without_rng,
        resume_without_optimizer,
        resume_from_step_zero,
        resume_pickles_a_generator,
    ],
    "accumulated_step": [
        accumulate_unscaled,
        accumulate_divided_by_count,
        accumulate_stale_gradients,
        accumulate_step_each,
    ],
    "evaluate_in_batches": [
        evaluate_without_eval,
        evaluate_without_no_grad,
        evaluate_mean_of_means,
        evaluate_stays_in_eval,
    ],
}
