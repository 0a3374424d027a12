"""Fit a small MLP with dlkit.train.fit, under torchrun (2 CPU processes, gloo) or in one process.

    python -m torch.distributed.run --standalone --nproc_per_node 2 _ddp_fit.py OUT_DIR
    python _ddp_fit.py OUT_DIR --single

Each process writes OUT_DIR/history_rank<R>.json; process 0 also writes metrics.csv and ckpt.pt.
The single-process run sees, at every step, the union of what the two processes see: a
DistributedSampler deals process r the indices perm[r::2] of one permutation ``perm`` (a function of
seed and epoch), so with a global batch of B, step k covers perm[k*B:(k+1)*B] between them. A
DistributedSampler for one process (num_replicas=1) yields perm itself, in that order.
"""

from __future__ import annotations

import argparse
import os

import torch
from _train_setup import easy_classification, mlp, write_json
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from dlkit.device import seed_everything
from dlkit.train import cleanup_distributed, fit, get_rank, get_world_size, make_loader, setup_distributed

GLOBAL_BATCH, NUM_EPOCHS, SEED = 32, 3, 0


def _threads() -> int:
    """This process's OS threads (Linux); gloo runs its collectives and transport on threads of its own."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0


def run(out_dir: str, single: bool) -> list[dict[str, float]]:
    threads_before = _threads()
    device = setup_distributed("cpu")  # gloo, even where there are GPUs
    seed_everything(SEED)
    train, val = easy_classification(n=512)  # 384 train, 128 val: both divide evenly by 2 * 32
    if single:
        sampler = DistributedSampler(train, num_replicas=1, rank=0, shuffle=True, seed=SEED)
        train_loader = DataLoader(train, batch_size=GLOBAL_BATCH, sampler=sampler)
    else:
        train_loader = make_loader(train, GLOBAL_BATCH, shuffle=True, seed=SEED)
        assert train_loader.batch_size == GLOBAL_BATCH // get_world_size()
    model = mlp()  # no dropout, no batch norm: the processes compute exactly what one process would
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    history = fit(
        model,
        optimizer,
        train_loader,
        make_loader(val, 64, shuffle=False),
        loss_fn=nn.CrossEntropyLoss(),
        num_epochs=NUM_EPOCHS,
        device=device,
        amp=False,
        run_dir=out_dir,
        checkpoint_path=os.path.join(out_dir, "ckpt.pt"),
    )
    rank = get_rank()
    cleanup_distributed()
    # The process group is destroyed now, not at interpreter teardown: its threads are gone.
    threads = {"before_setup": threads_before, "after_cleanup": _threads()}
    write_json(os.path.join(out_dir, f"history_rank{rank}.json"), {"rows": history.rows, "threads": threads})
    return history.rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--single", action="store_true")
    args = parser.parse_args()
    run(args.out_dir, args.single)
