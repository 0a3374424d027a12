"""Reference solutions for fundamentals/04's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def train_resumable(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    path: Path,
    num_steps: int,
) -> None:
    start = 0
    if Path(path).exists():
        checkpoint = torch.load(path, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["rng"])
        start = checkpoint["step"]
    for step in range(start, num_steps):
        X, y = batches[step]
        optimizer.zero_grad()
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}
        torch.save({**checkpoint, "rng": torch.get_rng_state()}, path)


def accumulated_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    micro_batch_size: int,
) -> None:
    optimizer.zero_grad()
    for X_i, y_i in zip(X.split(micro_batch_size), y.split(micro_batch_size), strict=True):
        loss = F.cross_entropy(model(X_i), y_i) * len(y_i) / len(y)  # its share of the full batch's mean
        loss.backward()  # adds to .grad
    optimizer.step()


@torch.no_grad()
def evaluate_in_batches(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for X_i, y_i in zip(X.split(batch_size), y.split(batch_size), strict=True):
        logits = model(X_i)
        loss_sum += F.cross_entropy(logits, y_i, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y_i).sum().item()
    model.train(was_training)
    return loss_sum / len(y), correct / len(y)
