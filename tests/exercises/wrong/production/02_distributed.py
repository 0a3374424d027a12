"""Plausible wrong answers to production/02's exercises: each must make its check fail."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ddp_step_sum(model, optimizer, shards) -> None:
    optimizer.zero_grad()
    for x, y in shards:
        F.cross_entropy(model(x), y).backward()  # the all-reduce's sum, never divided by the world size
    optimizer.step()


def ddp_step_no_zero_grad(model, optimizer, shards) -> None:
    grads = []
    for x, y in shards:
        F.cross_entropy(model(x), y).backward()  # adds to the previous shard's (and step's) gradient
        grads.append([p.grad.clone() for p in model.parameters()])
    for i, p in enumerate(model.parameters()):
        p.grad = sum(g[i] for g in grads) / len(grads)
    optimizer.step()


def ddp_step_rank0_only(model, optimizer, shards) -> None:
    optimizer.zero_grad()
    x, y = shards[0]
    F.cross_entropy(model(x), y).backward()  # no all-reduce: each process would drift apart
    optimizer.step()


def shard_indices_contiguous(n: int, rank: int, world_size: int, epoch: int, seed: int = 0) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    indices = torch.randperm(n, generator=g).tolist()
    size = -(-n // world_size)
    indices += indices[: size * world_size - n]
    return indices[rank * size : (rank + 1) * size]  # a block per process, not every world_size-th


def shard_indices_same_every_epoch(
    n: int, rank: int, world_size: int, epoch: int, seed: int = 0
) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed)  # forgets the epoch: every epoch sees the same order
    indices = torch.randperm(n, generator=g).tolist()
    total = -(-n // world_size) * world_size
    indices += indices[: total - n]
    return indices[rank:total:world_size]


def shard_indices_no_padding(n: int, rank: int, world_size: int, epoch: int, seed: int = 0) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g).tolist()[rank::world_size]  # uneven shards: a rank waits forever


WRONG = {
    "ddp_step": [ddp_step_sum, ddp_step_no_zero_grad, ddp_step_rank0_only],
    "shard_indices": [shard_indices_contiguous, shard_indices_same_every_epoch, shard_indices_no_padding],
}
