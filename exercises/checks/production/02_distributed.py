"""Checks for production/02 (distributed training): one process on the whole batch is DDP's oracle,
and `torch.utils.data.DistributedSampler` is the sharding's."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from dlkit.exercises import expect, expect_tensor


def check_ddp_step(ddp_step) -> None:
    g = torch.Generator().manual_seed(0)
    for world in (2, 3):
        torch.manual_seed(world)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
        oracle = copy.deepcopy(model)
        x, y = (
            torch.randn(4 * world, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (4 * world,), generator=g),
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        oracle_opt = torch.optim.SGD(oracle.parameters(), lr=0.5)
        for p in model.parameters():  # a gradient left over from an earlier step must not count
            p.grad = torch.full_like(p, 3.0)
        for step in (1, 2):  # the second step starts where the first left its gradients
            before = [p.detach().clone() for p in model.parameters()]
            ddp_step(model, optimizer, list(zip(x.chunk(world), y.chunk(world), strict=True)))
            oracle_opt.zero_grad()
            F.cross_entropy(oracle(x), y).backward()  # one process, the whole global batch
            oracle_opt.step()
            moved = sum((p.detach() - b).norm() for p, b in zip(model.parameters(), before, strict=True))
            wanted = sum((q.detach() - b).norm() for q, b in zip(oracle.parameters(), before, strict=True))
            expect(
                abs(moved / wanted - world) > 1e-6 or step > 1,
                f"ddp_step with {world} shards moved the weights {world}x too far: the all-reduce sums "
                f"the gradients; divide by the number of processes ({world}) to average them",
            )
            for (name, p), q in zip(model.named_parameters(), oracle.parameters(), strict=True):
                expect_tensor(
                    p,
                    q,
                    f"{name} after {step} ddp_step call(s) with {world} shards (zero the "
                    "gradients before each shard, and average every shard's)",
                    rtol=1e-9,
                    atol=1e-12,
                    reference="one process stepping on the whole batch",
                )


def check_shard_indices(shard_indices) -> None:
    for n, world, epoch, seed in [(10, 2, 0, 0), (11, 3, 1, 0), (13, 4, 5, 7), (2, 4, 0, 3), (40, 4, 2, 1)]:
        shards = []
        for rank in range(world):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
            expected = list(sampler)
            got = shard_indices(n, rank, world, epoch, seed)
            what = f"shard_indices(n={n}, rank={rank}, world_size={world}, epoch={epoch}, seed={seed})"
            expect(
                isinstance(got, list | tuple | torch.Tensor),
                f"{what} returned {type(got).__name__}; return a list of ints",
            )
            got = [int(i) for i in got]
            expect(
                len(got) == len(expected),
                f"{what} has {len(got)} indices; expected {len(expected)}: pad the shuffled indices with "
                "their first ones until the length is a multiple of world_size",
            )
            if got != expected:
                hint = ""
                if sorted(got) == sorted(expected):
                    hint = " (the right indices in another order)"
                elif world > 1 and n % world == 0 and got == sorted(got):
                    hint = " (not shuffled, or a contiguous block: take every world_size-th index)"
                expect(
                    False,
                    f"{what} is {got}; DistributedSampler gives {expected}{hint}. Seed the "
                    "generator with seed + epoch, then take indices[rank::world_size]",
                )
            shards += got
        expect(
            set(shards) == set(range(n)), f"n={n}, world_size={world}: the shards do not cover all examples"
        )
