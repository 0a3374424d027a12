# %% [markdown]
# # Production 02 · Distributed training: DDP, FSDP, and checkpoints that change size
#
# One process per GPU, each with a copy of the model, each seeing its share of every batch: that is
# data parallelism, and `torchrun` starts the processes. We run it for real (two CPU processes that
# talk through Gloo, or one per GPU with NCCL) and check what it promises: the same loss curve as one
# process on the same global batch.
#
# **What you will learn**
# - DistributedDataParallel: gradients averaged during `backward`, equal curves for the same global
#   batch; gradient accumulation as its one-process twin, and `no_sync` to accumulate without talking;
# - FSDP2 (`fully_shard`): each process keeps only its shard of weights, gradients and optimizer state;
# - distributed checkpoints (`torch.distributed.checkpoint`) saved by 2 processes, resumed by 1;
# - the multi-node launch (rendezvous), and the memory arithmetic of DDP vs FSDP at scale.
#
# This file is also the script `torchrun` runs: started by it, the cell "The script torchrun runs"
# does one process's work and stops there.

# %%
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from dlkit.config import flag
from dlkit.course import find_root
from dlkit.data import choose_dataset, load_dataset
from dlkit.errors import UserError
from dlkit.lesson import Lesson, LessonConfig, approx, exactly
from dlkit.plots import plot_curves
from dlkit.train import cleanup_distributed, get_rank, get_world_size, setup_distributed

JOB_ENV = "DLKIT_DISTRIBUTED_JOB"  # set by the lesson for the processes it starts with torchrun


@dataclass
class Config(LessonConfig):
    nproc: int = flag(2, help="processes torchrun starts, one per GPU (2 without GPUs)", min=2, max=64)
    steps: int = flag(60, help="optimizer steps of every run", min=2, max=100_000)
    global_batch: int = flag(256, help="examples per step, over all processes", min=4, max=65536)
    micro_batches: int = flag(2, help="micro-batches accumulated per step and process", min=2, max=64)
    width: int = flag(512, help="units of each hidden layer", min=8, max=65536)
    depth: int = flag(3, help="hidden layers (each one an FSDP unit)", min=1, max=64)
    lr: float = flag(0.1, help="SGD's learning rate (momentum 0.9)", above=0, max=10)
    resume_at: int = flag(30, help="step at which the FSDP run saves its distributed checkpoint", min=1)
    timeout: int = flag(600, help="seconds the torchrun job may take", min=10, max=86_400)  # fmt: skip


# %% [markdown]
# ## One loop for one process and for N
#
# Step k trains on the global batch of examples `[k B, (k+1) B)`. Process r of W takes every W-th of
# them (`[r::W]`, what `DistributedSampler` and `dlkit.train.make_loader` deal out), so the W shares
# are the global batch. Each step is split into micro-batches whose losses are divided by their number:
# their gradients then add up to the gradient of the whole share. The model has no dropout and no batch
# norm, so one process and W processes compute the same thing, up to the order of float additions.


# %%
def make_model(num_inputs: int, width: int, depth: int, num_classes: int, seed: int) -> nn.Sequential:
    """An MLP of ``depth`` (Linear, GELU) blocks and a linear head; the same weights for the same seed."""
    torch.manual_seed(seed)  # every process builds the same model: FSDP shards it, it does not broadcast
    sizes = [num_inputs] + [width] * depth
    blocks = [nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(sizes, sizes[1:], strict=False)]
    return nn.Sequential(*blocks, nn.Linear(width, num_classes))


def mean_over_processes(value: torch.Tensor) -> float:
    """The mean of ``value`` over all processes (the value itself in one process)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value.item()


def train(
    model, optimizer, X, y, *, steps: range, batch: int, micro: int = 1, scale: bool = True
) -> list[float]:
    """SGD steps on this process's share of each global batch; returns every step's loss (all processes').

    ``micro`` micro-batches are accumulated per step; ``scale=False`` forgets to divide their losses by
    ``micro`` (a classic bug). Under DDP the gradients of all but the last micro-batch stay local
    (``no_sync``): one all-reduce per step instead of one per micro-batch.
    """
    rank, world, losses = get_rank(), get_world_size(), []
    for k in steps:
        xb, yb = X[k * batch : (k + 1) * batch][rank::world], y[k * batch : (k + 1) * batch][rank::world]
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=X.device)
        for i, (xm, ym) in enumerate(zip(xb.chunk(micro), yb.chunk(micro), strict=True)):
            local = isinstance(model, DistributedDataParallel) and i < micro - 1
            with model.no_sync() if local else nullcontext():
                loss = F.cross_entropy(model(xm), ym)  # the mean over this micro-batch
                (loss / micro if scale else loss).backward()  # DDP all-reduces gradients here (last one)
            step_loss += loss.detach() / micro
        optimizer.step()
        losses.append(mean_over_processes(step_loss))
    return losses


# %% [markdown]
# ## DDP and FSDP, one process's view
#
# `DistributedDataParallel` keeps a whole copy of the model in every process and averages the
# gradients over the processes during `backward` (in buckets, overlapping with the computation), so
# every process takes the same step. `fully_shard` (FSDP2) splits every parameter along its first
# dimension: process r keeps rows r/W of each weight, of its gradient and of its optimizer state. Before
# a block computes, its full weights are gathered (all-gather) and freed after; gradients are summed and
# split again (reduce-scatter). Same mathematics, 1/W of the model state per process.
#
# `torch.distributed.checkpoint` (DCP) saves such a model as it lies: each process writes its shards,
# plus a metadata file that says where each piece of each tensor is. Loading reads the pieces any new
# layout needs, whatever the number of processes that wrote them.


# %%
def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes this process holds of parameters, gradients and optimizer state (its shards, under FSDP)."""
    tensors = [*model.parameters(), *(p.grad for p in model.parameters() if p.grad is not None)]
    tensors += [
        t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)
    ]
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]  # a DTensor's own shard
    return sum(t.numel() * t.element_size() for t in local)


def run_part(job: dict, data, kind: str) -> dict:
    """One process's DDP, DDP + no_sync (accumulation) or FSDP run; FSDP saves a checkpoint on the way."""
    model = make_model(data[0].shape[1], job["width"], job["depth"], 10, job["seed"]).to(data[0].device)
    if kind == "fsdp":
        for block in model[:-1]:
            fully_shard(block)  # one unit per block: gathered for its computation, freed after
        fully_shard(model)  # the rest (the head)
        net = model
    else:
        net = DistributedDataParallel(model, device_ids=[data[0].device.index] if data[0].is_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=job["lr"], momentum=0.9)
    micro, at = (job["micro_batches"] if kind == "no_sync" else 1), job["resume_at"]
    losses = train(net, optimizer, *data, steps=range(at), batch=job["global_batch"], micro=micro)
    if kind == "fsdp":  # every process writes its shards (and process 0 the metadata)
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=job["checkpoint"])
    losses += train(
        net, optimizer, *data, steps=range(at, job["steps"]), batch=job["global_batch"], micro=micro
    )
    peak = torch.cuda.max_memory_allocated(data[0].device) if data[0].is_cuda else None
    return {"losses": losses, "state_bytes": state_bytes(model, optimizer), "cuda_peak_bytes": peak}


# %% [markdown]
# ## The script torchrun runs
#
# `torchrun --nproc_per_node W this_file.py` starts W copies of this file with `RANK`, `LOCAL_RANK`,
# `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` in their environment. `dlkit.train.setup_distributed`
# reads them and joins the process group (NCCL on GPUs, Gloo on CPUs); `cleanup_distributed` leaves it.
# The lesson below starts the job with `DLKIT_DISTRIBUTED_JOB` naming its folder: each process then runs
# the three parts, writes what it measured there, and exits here.


# %%
def run_job(folder: Path) -> None:
    job = json.loads((folder / "job.json").read_text())
    device = setup_distributed(job["device"])
    X, y = torch.load(folder / "data.pt", weights_only=True)
    data = X.to(device), y.to(device)
    results = {kind: run_part(job, data, kind) for kind in ("ddp", "no_sync", "fsdp")}
    (folder / f"rank{get_rank()}.json").write_text(json.dumps(results))
    cleanup_distributed()


if JOB_ENV in os.environ and "RANK" in os.environ:  # one of torchrun's processes: do its work, stop
    run_job(Path(os.environ[JOB_ENV]))
    sys.exit(0)

# %% [markdown]
# ## Launching the job
#
# The lesson writes the data and the settings to a folder, starts `python -m torch.distributed.run`
# (what the `torchrun` command runs) on this file, and waits. With one GPU per process it uses NCCL;
# otherwise two CPU processes use Gloo (NCCL needs a GPU of its own per process).

# %%
quick = {"steps": 24, "global_batch": 32, "width": 64, "depth": 2, "lr": 0.2, "resume_at": 12}
lesson = Lesson("production/02_distributed", Config, quick=quick)
cfg, device = lesson.cfg, lesson.device
name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
train_set = load_dataset(name, "train")
B, n = cfg.global_batch, cfg.steps * cfg.global_batch
if len(train_set) < n:
    raise UserError(f"{name} has {len(train_set)} training examples; --steps x --global-batch needs {n}")
order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(cfg.seed))[:n]
X, y = train_set.x[order].flatten(1), train_set.y[order]  # (n, pixels), (n,)
lesson.uses_data(name, f"{n} training examples, flattened: {train_set.source}")

gpus = device.type == "cuda" and torch.cuda.device_count() >= cfg.nproc
nproc = cfg.nproc if gpus else 2
if not gpus:
    print(f"{nproc} CPU processes with Gloo (NCCL needs {cfg.nproc} GPUs; this machine: {device})")
job_dir = lesson.run_dir / "job"
shutil.rmtree(job_dir, ignore_errors=True)  # results and checkpoints of an earlier run
job_dir.mkdir(parents=True)
job = {**{k: v for k, v in asdict(cfg).items() if k != "device"}, "device": "cuda" if gpus else "cpu",
       "checkpoint": str(job_dir / f"checkpoint_step{cfg.resume_at}")}  # fmt: skip
(job_dir / "job.json").write_text(json.dumps(job, indent=1))
torch.save((X, y), job_dir / "data.pt")
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(find_root() / "production" / "02_distributed.py")]  # fmt: skip
print("$", " ".join(command[1:]))
env = {**os.environ, JOB_ENV: str(job_dir), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
done = subprocess.run(command, env=env, timeout=cfg.timeout, capture_output=True, text=True)
if done.returncode != 0:
    raise RuntimeError(f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
ranks = [json.loads((job_dir / f"rank{r}.json").read_text()) for r in range(nproc)]
print(f"{nproc} processes done; checkpoint files:", sorted(p.name for p in Path(job["checkpoint"]).iterdir()))

# %% [markdown]
# ## One process, the reference
#
# The reference trains one model on the whole global batch. Accumulating micro-batches in one process
# must give its curve too (gradient accumulation is how one GPU imitates a bigger batch), and
# forgetting to divide their losses must not: it multiplies the gradient, hence the learning rate, by
# the number of micro-batches.


# %%
def single(micro: int = 1, scale: bool = True) -> list[float]:
    """The loss curve of one process on the global batches, in ``micro`` micro-batches per step."""
    model = make_model(X.shape[1], cfg.width, cfg.depth, 10, cfg.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    return train(model, optimizer, X, y, steps=range(cfg.steps), batch=B, micro=micro, scale=scale)


def max_gap(a: list[float], b: list[float]) -> float:
    return max(abs(p - q) for p, q in zip(a, b, strict=True))


reference = single()
curves = {"one process": reference, "accumulation": single(cfg.micro_batches), f"DDP, {nproc} processes":
          ranks[0]["ddp"]["losses"], "DDP + no_sync": ranks[0]["no_sync"]["losses"],
          f"FSDP, {nproc} processes": ranks[0]["fsdp"]["losses"]}  # fmt: skip
for label, curve in curves.items():
    print(f"{label:>22}: loss {curve[0]:.4f} -> {curve[-1]:.4f}, max |gap| {max_gap(curve, reference):.1e}")
last = sum(reference[-4:]) / 4  # single batches are noisy: the mean of the last four
print(f"loss of the first step {reference[0]:.3f}, of the last four {last:.3f}: it learns")
lesson.record("learned_loss_ratio", last / reference[0], max=0.9)
lesson.record("accumulation_loss_gap", max_gap(curves["accumulation"], reference), max=1e-5)
unscaled = single(cfg.micro_batches, scale=False)
lesson.record("unscaled_accumulation_loss_gap", max_gap(unscaled, reference), min=1e-3)
for kind in ("ddp", "no_sync", "fsdp"):  # process 0's curves; every process printed the same means
    lesson.record(f"{kind}_loss_gap", max_gap(ranks[0][kind]["losses"], reference), max=1e-5)

# %% [markdown]
# What to notice: every curve lies on the reference to about 1e-7, float rounding: two processes with
# half a batch each are one process with the whole batch. Only the forgotten division by the number of
# micro-batches walks away. The memory is where DDP and FSDP differ:

# %%
ddp_bytes, fsdp_bytes = ranks[0]["ddp"]["state_bytes"], ranks[0]["fsdp"]["state_bytes"]
print(f"state per process: DDP {ddp_bytes / 2**20:.2f}, FSDP {fsdp_bytes / 2**20:.2f} MiB")
if gpus:
    print(
        "CUDA peak per process (MiB):", {k: ranks[0][k]["cuda_peak_bytes"] / 2**20 for k in ("ddp", "fsdp")}
    )
lesson.record("fsdp_state_ratio", fsdp_bytes / ddp_bytes, **approx(1 / nproc, 0.05 / nproc))
lesson.savefig(plot_curves(curves, title="one process and N processes: one curve"), "loss_curves")

# %% [markdown]
# ## Resuming on a different number of processes
#
# The FSDP job saved a distributed checkpoint at step `resume_at`, one file of shards per process. One
# process now loads it into an unsharded model and a fresh optimizer: `get_state_dict` describes what
# this process wants, `dcp.load` reads those pieces from the shards, `set_state_dict` puts them in.
# The resumed run must continue the reference exactly.

# %%
model = make_model(X.shape[1], cfg.width, cfg.depth, 10, cfg.seed + 1)  # other weights: all must load
optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
model_state, optim_state = get_state_dict(model, optimizer)
state = {"model": model_state, "optim": optim_state}
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
    dcp.load(state, checkpoint_id=job["checkpoint"])  # no process group: one process reads all shards
set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
resumed = train(model, optimizer, X, y, steps=range(cfg.resume_at, cfg.steps), batch=B)
print(f"resumed from step {cfg.resume_at} in 1 process: losses {resumed[0]:.4f} -> {resumed[-1]:.4f}")
lesson.record("resharded_resume_loss_gap", max_gap(resumed, reference[cfg.resume_at :]), max=1e-5)
lesson.record("checkpoint_files", len(list(Path(job["checkpoint"]).glob("*.distcp"))), **exactly(nproc))

# %% [markdown]
# ## Many machines
#
# On a cluster, torchrun runs once per machine (node) and the nodes find each other at a *rendezvous*
# endpoint: one of them, or a store both can reach. Each process gets its global `RANK` (node rank x
# processes per node + `LOCAL_RANK`) and `WORLD_SIZE` (nodes x processes per node). The script is the
# same; the data loader deals out `WORLD_SIZE` shares, and a checkpoint is written by all processes.


# %%
def launch_command(nnodes: int, nproc_per_node: int, endpoint: str, script: str = "train.py") -> str:
    """The command to run on every node of the job (the same on each)."""
    return (f"torchrun --nnodes {nnodes} --nproc_per_node {nproc_per_node} --rdzv_backend c10d "
            f"--rdzv_endpoint {endpoint} --rdzv_id job42 {script}")  # fmt: skip


print(launch_command(2, 8, "node0.cluster:29500"))

# %% [markdown]
# What changes at scale, on paper. Training in bf16 with Adam keeps 16 bytes per parameter (the
# ZeRO paper's accounting, Rajbhandari et al. 2020): bf16 weights (2) and gradients (2), and in float32
# a master copy of the weights (4) and Adam's two moments (8). DDP keeps all 16 in every GPU; FSDP
# (ZeRO-3) keeps 16/W, plus the gathered weights of the block being computed. Activations come on top
# and grow with the batch (lesson 01). Communication per step: DDP all-reduces the gradients (2x their
# size per GPU); FSDP all-gathers the weights twice and reduce-scatters the gradients, 1.5x as much.


# %%
def model_state_gib(num_params: float, world: int, strategy: str, bytes_per_param: int = 16) -> float:
    """GiB of weights, gradients and optimizer state per GPU (activations not counted)."""
    return num_params * bytes_per_param / (world if strategy == "fsdp" else 1) / 2**30


for params, label in [(125e6, "125M"), (1.3e9, "1.3B"), (7e9, "7B"), (70e9, "70B")]:
    ddp, fsdp = model_state_gib(params, 8, "ddp"), model_state_gib(params, 8, "fsdp")
    print(f"{label:>5}: DDP {ddp:8.1f} GiB per GPU, FSDP on 8 GPUs {fsdp:7.1f} GiB (one H100: 80 GB)")

# %% [markdown]
# ## What you measured
#
# Two processes (DDP, DDP with `no_sync`, FSDP) gave the loss curve of one process with the same global
# batch, to float rounding, and so did accumulation in one process (and not without dividing the
# losses); FSDP kept 1/W of the model state per process; a checkpoint written by W processes resumed
# in one and continued the curve exactly. A 7B model's 104 GiB of state fits no single GPU: FSDP on 8
# GPUs needs 13 GiB each.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub, then run the check cell below (or `dlkit check production/02`). The checks
# compare your code with one process on the whole batch and with `DistributedSampler`.

# %% tags=["exercise"]
import torch
import torch.nn.functional as F  # noqa: F811


def ddp_step(model, optimizer, shards) -> None:
    """Take one SGD step of `model` as DDP on `len(shards)` processes would, all in this process.

    `shards` is a list of (x, y) of equal size, one per process. For each shard compute the gradient
    of `F.cross_entropy(model(x), y)`, average the shards' gradients (DDP's all-reduce, then / W), put
    the average in each parameter's `.grad`, then call `optimizer.step()`. Do not let one shard's
    gradient leak into the next. The result must equal one step on the whole batch.
    """
    raise NotImplementedError


# %% tags=["exercise"]
def shard_indices(n: int, rank: int, world_size: int, epoch: int, seed: int = 0) -> list[int]:
    """Return the indices of `n` examples that process `rank` of `world_size` reads in `epoch`.

    As `torch.utils.data.DistributedSampler` (shuffle=True) does: shuffle with `torch.randperm` on a
    generator seeded with `seed + epoch`; repeat indices from the start until the length is a
    multiple of `world_size` (every process then gets as many); then take every `world_size`-th from `rank`.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
