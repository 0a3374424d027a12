# %% [markdown]
# # Production 01 · GPU efficiency: what each technique is worth on your machine
#
# "Use mixed precision, channels_last and `torch.compile`, keep the data on the GPU" is advice every
# guide repeats. Here you measure it: one table row per technique, for the two models the projects
# train (a ResNet-style CIFAR-10 network and the character GPT), on the machine you run this on.
#
# **What you will learn**
# - how to time GPU work honestly: warm-up, `synchronize`, the median of several runs;
# - float32 vs TF32 vs bf16 autocast, `channels_last`, `torch.compile` (and what compiling costs);
# - data kept on the device vs a `DataLoader` with workers and pinned memory (`non_blocking`);
# - batch size against throughput and memory, and where the time goes (`torch.profiler`).
#
# On a CPU the same lesson measures threads, bf16 with and without native hardware support, and
# `torch.compile` there. Speeds depend on the machine and its load: they are printed and written to
# `runs/production/01_gpu_efficiency/table.md`, never checked; what is checked is what must hold
# anywhere (a memory format or a compiler does not change the result, bf16 does, a little).

# %%
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset

from dlkit import perf
from dlkit.config import flag
from dlkit.course import find_root
from dlkit.device import autocast, cpu_has_native_bf16, fast_dtype
from dlkit.lesson import Lesson, LessonConfig, exactly
from dlkit.perf import markdown_table, switches, time_per_call
from dlkit.train import TensorBatches

sys.path.insert(0, str(find_root()))  # the repository root: we measure the projects' own models
from projects.image_classifier.models import MODELS, build_model
from projects.text_generator.model import GPT, GPTConfig

# Models, batches and images for a GPU, a CPU (minutes) and quick mode (seconds); gpt: (layers, heads,
# width, context), the project's own on a GPU.
SIZES = {
    "gpu": dict(cnn="resnet18", width=64, cnn_batch=512, gpt=(6, 6, 384, 256), gpt_batch=64,
                batch_sizes=(128, 256, 512, 1024), images=50_000, workers=8),
    "cpu": dict(cnn="resnet_small", width=32, cnn_batch=64, gpt=(4, 4, 128, 128), gpt_batch=16,
                batch_sizes=(16, 32, 64, 128), images=10_000, workers=2),
    "tiny": dict(cnn="resnet_small", width=8, cnn_batch=16, gpt=(2, 2, 64, 64), gpt_batch=8,
                 batch_sizes=(4, 8, 16), images=512, workers=2),
}  # fmt: skip


@dataclass
class Config(LessonConfig):
    size: str = flag("auto", help="models and batches (auto: gpu on CUDA)", choices=("auto", *SIZES))
    cnn: str = flag("auto", help="the CIFAR model (auto: the size's)", choices=("auto", *MODELS))
    repeats: int = flag(5, help="timings per row (the median is reported)", min=1, max=100)
    compile: bool = flag(True, help="measure torch.compile (1-3 minutes of compiling on a CPU)")


quick = {"size": "tiny", "repeats": 2, "compile": False}
lesson = Lesson("production/01_gpu_efficiency", Config, quick=quick)
cfg, device = lesson.cfg, lesson.device
size = SIZES[cfg.size if cfg.size != "auto" else ("gpu" if device.type == "cuda" else "cpu")]
cnn_name = size["cnn"] if cfg.cnn == "auto" else cfg.cnn
machine = perf.machine_line(device)
print(machine)
lesson.uses_data("speed", "random CIFAR-shaped images and characters: a speed does not depend on values")

# %% [markdown]
# ## Timing GPU work
#
# A CUDA call returns as soon as the work is *queued*; the GPU runs it later. A timer that does not
# wait (`torch.cuda.synchronize()`) measures Python, not the GPU. The first calls are slow too (memory
# is allocated, cuDNN tries kernels, `torch.compile` compiles), so `dlkit.perf.time_per_call` runs a
# few untimed calls first and reports the median of several timings. One training step is the unit.


# %%
@dataclass(frozen=True)
class Setting:
    name: str
    bf16: bool = False  # autocast the forward pass to bfloat16
    tf32: bool = False  # float32 matmuls and convolutions on tensor cores (CUDA, Ampere and newer)
    channels_last: bool = False  # images stored (N, H, W, C) in memory
    compile: bool = False
    threads: int = 0  # CPU threads (0: torch's default)


def make_cnn() -> nn.Module:
    torch.manual_seed(cfg.seed)
    w = size["width"]
    kwargs = {"widths": (w, 4 * w, 4 * w)} if cnn_name == "resnet_small" else {}
    return build_model(cnn_name, 10, **kwargs).to(device)


def make_gpt() -> nn.Module:
    torch.manual_seed(cfg.seed)
    layers, heads, width, context = size["gpt"]
    return GPT(GPTConfig(65, block_size=context, n_layer=layers, n_head=heads, n_embd=width)).to(device)


def gpt_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # (B*T, vocab) vs (B*T,)


def batch_of(model: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random CIFAR-shaped images and labels, or n windows of characters and their next characters."""
    if model != "gpt":
        return torch.rand(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)
    idx = torch.randint(0, 65, (n, size["gpt"][3] + 1), device=device)
    return idx[:, :-1], idx[:, 1:]


def prepared(model: nn.Module, x: torch.Tensor, s: Setting) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(model, the module to call, input) in the memory format and compiled as ``s`` says."""
    if s.channels_last:  # weights and input (N, C, H, W) stored as (N, H, W, C); the shapes stay
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, torch.compile(model) if s.compile else model, x


def make_step(model: nn.Module, batch, loss_fn, s: Setting):
    """One SGD training step of ``model`` on ``batch`` under setting ``s``, as a function."""
    (model, net, x), y = prepared(model, batch[0], s), batch[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        with autocast(device, torch.bfloat16 if s.bf16 else None):
            loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(make_model, batch, loss_fn, s: Setting, items: int) -> dict:
    """A table row: items (images or tokens) per second, and the first step's extra time (compiling)."""
    with switches(tf32=s.tf32, threads=s.threads):
        step = make_step(make_model(), batch, loss_fn, s)
        first = time_per_call(step, device=device, warmup=0, repeats=1)  # includes compiling
        seconds = time_per_call(step, device=device, warmup=1, repeats=cfg.repeats)
    return {"setting": s.name, "per_s": items / seconds, "compile_s": first - seconds if s.compile else None}


# %% [markdown]
# ## Precision, memory format, compiler: one row each
#
# Each row adds one technique to the row above, starting from the naive setting (float32, eager).
# **TF32** keeps float32 tensors but multiplies with 10 bits of mantissa on tensor cores; **bf16
# autocast** runs matmuls and convolutions in bfloat16 (8 bits of mantissa, float32's range) and keeps
# sums and losses in float32; **channels_last** stores images pixel by pixel, the layout tensor-core
# convolutions read; **`torch.compile`** traces the model and fuses its small operations into fewer
# kernels. On a CPU, TF32 does not exist; threads do, and bf16 only pays where the CPU has bf16
# instructions (AVX512-BF16 or AMX).

# %%
gpu = device.type == "cuda"
threads = 1 if torch.get_num_threads() > 1 else os.cpu_count() or 1  # the other choice than torch's
fast = fast_dtype(device) == torch.bfloat16  # bf16 where the hardware runs it natively: later rows keep it
steps = [Setting("float32 (naive)")]
steps += [Setting("TF32", tf32=True)] if gpu else [Setting(f"float32, {threads} thread(s)", threads=threads)]
steps += [Setting("bf16 autocast", bf16=True, tf32=gpu)]
best = Setting("bf16" if fast else "float32", bf16=fast, tf32=gpu)  # the fastest precision here
cnn_settings = [*steps, replace(best, name=f"{best.name} + channels_last", channels_last=True)]
gpt_settings = list(steps)
if cfg.compile:
    cnn_settings.append(replace(best, name=f"{best.name} + channels_last + compile", channels_last=True,
                                compile=True))  # fmt: skip
    gpt_settings.append(replace(best, name=f"{best.name} + compile", compile=True))
else:
    print("torch.compile: not measured (--no-compile or --quick; it compiles for minutes on a CPU)")

tables = {}
B, G = size["cnn_batch"], size["gpt_batch"]
for name, make_model, batch, loss_fn, settings, items, unit in [
    (cnn_name, make_cnn, batch_of("cnn", B), F.cross_entropy, cnn_settings, B, "img/s"),
    ("char GPT", make_gpt, batch_of("gpt", G), gpt_loss, gpt_settings, G * size["gpt"][3], "tokens/s"),
]:  # fmt: skip
    rows = [measure(make_model, batch, loss_fn, s, items) for s in settings]
    for row in rows:
        row["vs naive"] = f"{row['per_s'] / rows[0]['per_s']:.2f}x"
    tables[name], top = rows, max(rows, key=lambda r: r["per_s"])
    print(f"\n{name}, {items} {unit.split('/')[0]} per step; per_s in {unit}:")
    print(markdown_table(rows, ["setting", "per_s", "vs naive", "compile_s"]))
    print(f"best setting: {top['setting']}, {top['vs naive']} the naive one")
measured = sum(r["per_s"] > 0 for rows in tables.values() for r in rows)
lesson.record("technique_rows", measured, **exactly(len(cnn_settings) + len(gpt_settings)))

# %% [markdown]
# What to notice: on a GPU, bf16 and TF32 pay most (tensor cores), `channels_last` helps convolutions
# under bf16, and `torch.compile` removes the cost of many small kernels, after tens of seconds of
# compiling. On a CPU, bf16 pays only where matmuls are large and the CPU has bf16 instructions (the
# op table below); quick mode's tiny models gain nothing, as casts cost what the maths saves. With
# few cores a second thread helps less than you would think, and on busy cores it can hurt a lot.
#
# A faster setting is only useful if it computes the same thing. A memory format and a compiler must
# not change the outputs beyond float rounding; bf16 changes them by about 2^-8 relative, and a
# relative error of zero would mean autocast did not run at all.


# %%
@torch.no_grad()
def logits(s: Setting, x: torch.Tensor) -> torch.Tensor:
    _, net, x = prepared(make_cnn().eval(), x, s)
    with switches(tf32=s.tf32, threads=s.threads), autocast(device, torch.bfloat16 if s.bf16 else None):
        return net(x).float()


x_check = batch_of("cnn", 8)[0]
reference = logits(Setting("float32"), x_check)
scale = reference.abs().max().item()
rel = {k: (logits(s, x_check) - reference).abs().max().item() / scale for k, s in {
    "channels_last": Setting("", channels_last=True), "bf16": Setting("", bf16=True),
    **({"compile": Setting("", compile=True)} if cfg.compile else {}),
}.items()}  # fmt: skip
print("largest |difference| / largest |logit| vs float32:", {k: f"{v:.1e}" for k, v in rel.items()})
lesson.record("channels_last_rel_error", rel["channels_last"], max=1e-5)
lesson.record("bf16_rel_error", rel["bf16"], min=1e-4, max=0.1)
if cfg.compile:
    lesson.record("compile_rel_error", rel["compile"], max=1e-4)

# %% [markdown]
# ## bf16 without bf16 hardware
#
# Most laptop CPUs (AVX2 only) have no bf16 instructions: PyTorch then converts every bf16 operand to
# float32 and back, and bf16 is *slower* than float32. That is why `dlkit.device.autocast_dtype` turns
# bf16 on for a CPU only where it is native. On a CPU that has it, a fresh process with oneDNN limited
# to plain AVX-512 (`dlkit.perf.EMULATED_BF16_ENV`) shows what a CPU without it does.

# %%
if device.type == "cpu" and cpu_has_native_bf16():
    op_size, op_s = (256, 0.05) if lesson.quick else (512, 0.2)  # matrix size, seconds per rate
    rates = {kind: perf.op_rates(emulate_bf16=kind == "emulated", size=op_size, seconds=op_s)
             for kind in ("native", "emulated")}  # fmt: skip
    rows = [{"op": op, "bf16": kind, "float32 GFLOP/s": r[op]["float32"], "bf16 GFLOP/s": r[op]["bfloat16"],
             "bf16 vs float32": f"{r[op]['bfloat16'] / r[op]['float32']:.2f}x"}
            for kind, r in rates.items() for op in r]  # fmt: skip
    tables["bf16 native vs emulated"] = rows
    print(markdown_table(rows, list(rows[0])))
else:
    print("bf16 native vs emulated: measured on CPUs with native bf16 only (this device:", device, ")")

# %% [markdown]
# ## Feeding the model: a DataLoader vs data on the device
#
# A model is only as fast as its input. We time the feed alone, without a model: (1) PNG files
# decoded by PIL, one per image, as a folder of images is read (`dlkit.perf.PNGImages`), with 0 and
# with several `DataLoader` workers; (2) uint8 tensors in RAM through a `DataLoader`, which indexes and
# collates image by image; (3) the same tensors sliced a batch at a time, from pinned memory with
# `non_blocking` copies on a GPU; (4) the tensors kept on the GPU (`dlkit.train.TensorBatches`).
# Every feed yields the same batches: the comparison is fair.


# %%
n_images, workers = size["images"], size["workers"]
images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8)
labels = torch.randint(0, 10, (n_images,))
pngs = perf.PNGImages(images, labels)  # each image a PNG file in memory, decoded by PIL when read
pinned = images.pin_memory() if gpu else images  # page-locked: the copy to the GPU runs in the background
feeds = {
    "PNG + PIL, 0 workers": DataLoader(pngs, B),
    f"PNG + PIL, {workers} workers": DataLoader(pngs, B, num_workers=workers, pin_memory=gpu),
    "uint8 tensors, DataLoader": DataLoader(TensorDataset(images, labels), B, pin_memory=gpu),
    "uint8 tensors, sliced" + (", pinned, non_blocking" if gpu else ""): TensorBatches(pinned, labels, B),
}
if gpu:
    feeds["uint8 tensors on the GPU, sliced"] = TensorBatches(images.to(device), labels.to(device), B)
fed = {name: perf.feed_rate(batches, device, n_images) for name, batches in feeds.items()}
tables["data feed"] = [{"feed": name, "img/s": rate} for name, (rate, _) in fed.items()]
print(markdown_table(tables["data feed"], ["feed", "img/s"]))
firsts = [first for _, first in fed.values()]
lesson.record("feeds_agree", float(all(torch.equal(f, firsts[0]) for f in firsts)), **exactly(1))

# %% [markdown]
# What to notice: decoding files costs far more than the model on a GPU (the anchors below: 19k img/s
# from 8 PIL workers against 3.2M img/s from GPU-resident tensors). Workers help only with idle cores
# and enough images to pay for their start-up (not quick mode's 512, nor on a busy 2-core machine);
# a dataset that fits in memory is best decoded once and kept on the device.
#
# ## Batch size: throughput and memory
#
# A bigger batch keeps the device busier, up to a point; its cost is memory. The activations autograd
# saves for the backward pass grow with the batch, image by image (`dlkit.perf.saved_activation_bytes`
# counts them), while the weights, gradients and optimizer state do not: so the largest batch that
# fits is about (free memory - model state) / (activation bytes per image).

# %%
batch_rows = []
for n in size["batch_sizes"]:
    model, (x, y) = make_cnn(), batch_of("cnn", n)
    saved = perf.saved_activation_bytes(model, lambda: F.cross_entropy(model(x), y))  # noqa: B023
    torch.cuda.reset_peak_memory_stats(device) if gpu else None
    per_s = measure(make_cnn, (x, y), F.cross_entropy, replace(best, channels_last=True), n)["per_s"]
    row = {"batch": n, "img/s": per_s, "activations MiB": saved / 2**20, "per image KiB": saved / n / 1024}
    if gpu:
        row["peak MiB (CUDA)"] = torch.cuda.max_memory_allocated(device) / 2**20
    batch_rows.append(row)
tables["batch size"] = batch_rows
print(markdown_table(batch_rows, list(batch_rows[-1])))
per_image = [r["per image KiB"] for r in batch_rows]
lesson.record("activation_per_image_spread", (max(per_image) - min(per_image)) / min(per_image), max=0.02)

# %% [markdown]
# ## Where the time goes
#
# `torch.profiler` records every operation of a few steps; its table sorts them by the time spent in
# each one itself (not in the operations it calls). On a GPU, read the CUDA column: kernels. A step
# dominated by convolutions and matmuls is compute-bound (precision and the compiler help); one full
# of small element-wise operations and copies is bound by memory traffic or by launching kernels.

# %%
with switches(tf32=best.tf32):
    step = make_step(make_cnn(), batch_of("cnn", B), F.cross_entropy, best)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
        perf.sync(device)
key = "self_device_time_total" if gpu else "self_cpu_time_total"
averages = prof.key_averages()
print(averages.table(sort_by=key, row_limit=12))
(lesson.run_dir / "profile.txt").write_text(averages.table(sort_by=key, row_limit=40))
total = sum(getattr(e, key) for e in averages)
conv = sum(getattr(e, key) for e in averages if "conv" in e.key or "mm" in e.key)
print(f"convolutions and matmuls: {conv / total:.0%} of the profiled self time")

# %% [markdown]
# ## What you measured
#
# The tables above (also in `table.md`) are this machine's; the course's measured rows are in
# `production/README.md`. Anchors measured on one H100 with torch 2.11: ResNet-18 (CIFAR) 45k img/s in
# bf16, a small convnet 95k img/s compiled, 19k img/s from 8 PIL workers against 3.2M img/s from
# GPU-resident tensors. Checked here: every technique got its row, a memory format and a compiler leave
# the outputs alone while bf16 changes them slightly, every feed delivers the same batches, and
# activation memory grows in proportion to the batch.

# %%
perf.write_tables(lesson.run_dir, lesson.name, machine, tables)
print(f"tables written to {lesson.run_dir / 'table.md'}")
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub, then run the check cell below (or `dlkit check production/01`). The checks run
# your code against a fake device whose work runs asynchronously, and a real model's memory.


# %% tags=["exercise"]
def median_seconds(fn, sync, clock, warmup: int = 2, repeats: int = 5) -> float:
    """Return the median seconds of one `fn()` over `repeats` timings, after `warmup` untimed calls.

    `clock()` reads the time; `sync()` waits for the device (as `torch.cuda.synchronize`): call it
    before every clock read that ends a measurement, and after the warm-up (`perf.time_per_call`).
    """
    raise NotImplementedError


# %% tags=["exercise"]
def largest_batch(memory, budget: int, max_batch: int = 4096) -> int:
    """Return the largest batch B <= max_batch with `memory(B) <= budget` bytes (0 if none fits).

    `memory(B)` is one training step's peak (it grows with B). Probing every B is too slow: double
    B until it no longer fits, then bisect between the last fit and the first miss (~2 log2 probes).
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
