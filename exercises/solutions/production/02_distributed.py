"""Reference solutions for production/02's exercises (the test suite checks them with the same checks)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def ddp_step(model, optimizer, shards) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for x, y in shards:  # what each process computes on its own shard
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        for t, g in zip(total, grads, strict=True):
            t += g
    for p, t in zip(params, total, strict=True):  # the all-reduce sums; DDP divides by the world size
        p.grad = t / len(shards)
    optimizer.step()


def shard_indices(n: int, rank: int, world_size: int, epoch: int, seed: int = 0) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    indices = torch.randperm(n, generator=g).tolist()
    total = math.ceil(n / world_size) * world_size
    while len(indices) < total:  # padding may need more than one copy when n < world_size
        indices += indices[: total - len(indices)]
    return indices[rank:total:world_size]
