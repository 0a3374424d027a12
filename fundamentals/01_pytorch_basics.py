# %% [markdown]
# # 01 · PyTorch basics: tensors, views, NumPy and autograd
#
# Everything later in this course is built from two things: the **tensor** (an n-dimensional array
# that lives on a device) and **autograd** (which records what you compute and differentiates it).
#
# What you will learn:
# - how to create tensors, and what their `dtype`, `shape` and `device` are;
# - broadcasting: how `(3, 1)` and `(1, 4)` combine to `(3, 4)` without copying;
# - indexing, and which results are **views** (same memory) and which are **copies**;
# - that `torch.from_numpy` and `.numpy()` share memory with NumPy;
# - normalising real images (scikit-learn's digits) per pixel with one broadcast;
# - autograd: `requires_grad`, `backward`, gradient accumulation, `no_grad`, `detach`;
# - checking a gradient against finite differences, by hand and with `torch.autograd.gradcheck`;
# - timing a matrix multiply on the CPU and on a GPU, and why you must `synchronize` to do it.

# %%
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dlkit.config import flag
from dlkit.data import load_dataset
from dlkit.lesson import Lesson, LessonConfig
from dlkit.plots import image_grid


@dataclass
class Config(LessonConfig):
    matmul_size: int = flag(2048, help="n of the (n, n) @ (n, n) product that is timed", min=1, max=32768)
    timing_repeats: int = flag(5, help="timed products; the median is printed", min=1, max=1000)
    fd_eps: float = flag(1e-6, help="finite-difference step (float64 keeps its rounding error tiny)",
                         above=0, max=0.1)  # fmt: skip


lesson = Lesson("fundamentals/01_pytorch_basics", Config, quick={"matmul_size": 256, "timing_repeats": 3})
cfg, device = lesson.cfg, lesson.device

# %% [markdown]
# ## Creating tensors: dtype, shape, device
#
# A tensor has a `dtype` (what each number is), a `shape`, and a `device` (where its memory is).
# Python floats become `float32`, Python ints `int64`. Mixing them promotes to the wider kind.

# %%
a = torch.tensor([[1, 2], [3, 4]])  # (2, 2) int64, built from a nested list
b = torch.tensor([0.5, 1.5])  # (2,) float32: the default float type
c = torch.zeros(2, 3, dtype=torch.float64)  # (2, 3) explicit dtype
d = torch.randn(2, 3, device=device)  # (2, 3) created directly on the lesson's device
e = torch.arange(6).reshape(2, 3).to(device, torch.float32)  # move and convert in one call
for name, t in {"a": a, "b": b, "c": c, "d": d, "e": e}.items():
    print(f"{name}: shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}")
print("int64 + float32 ->", (a + b).dtype)  # type promotion: (2, 2) + (2,) also broadcasts

# %% [markdown]
# What to notice: `d` was created on the device rather than copied there, which is cheaper for
# large tensors. Operations need all their inputs on the same device: `d + c` would fail with
# "Expected all tensors to be on the same device" when the device is a GPU.
#
# ## Broadcasting
#
# Two shapes broadcast when, aligned from the right, each pair of sizes is equal or one of them is 1.
# The size-1 dimension is *stretched* without being copied.

# %%
col = torch.arange(3, device=device).view(3, 1)  # (3, 1)
row = torch.arange(4, device=device).view(1, 4)  # (1, 4)
table = 10 * col + row  # (3, 4): table[i, j] = 10 * i + j
explicit = 10 * col.expand(3, 4) + row.expand(3, 4)  # the same, with the stretching spelt out
print(table)
print("broadcast_shapes((8, 1, 5), (4, 1)) =", torch.broadcast_shapes((8, 1, 5), (4, 1)))
print("expand stride:", col.expand(3, 4).stride(), "(stride 0: one number reused, nothing copied)")
lesson.record("broadcast_shape_ok", float(table.shape == (3, 4) and torch.equal(table, explicit)), min=1)

# %% [markdown]
# What to notice: `expand` gives stride 0 along the stretched dimension, which is how broadcasting
# costs no memory. The rule is from the right: `(8, 1, 5)` and `(4, 1)` give `(8, 4, 5)`.
#
# ## Indexing, views and copies
#
# Basic indexing (integers, slices) and `view`, `transpose`, `expand` return **views**: new shape and
# strides over the *same* storage. Boolean masks and index lists return **copies**.

# %%
X = torch.arange(12, device=device)  # (12,)
M = X.view(3, 4)  # (3, 4) view: no data moved
M[0, 0] = 100  # writing through the view...
print("X[0] after writing M[0, 0]:", X[0].item())  # ...changes X
second_row = M[1]  # (4,) a slice is a view too; it starts 4 elements into the storage
same_storage = second_row.untyped_storage().data_ptr() == X.untyped_storage().data_ptr()
view_shares = M.data_ptr() == X.data_ptr() and X[0].item() == 100 and same_storage
lesson.record("view_shares_storage", float(view_shares), min=1)

evens = M[M % 2 == 0]  # (k,) boolean mask: a copy, flattened
picked = M[[0, 2]]  # (2, 4) index list: a copy
print("mask:", evens.tolist(), " rows 0 and 2:", picked.shape)

# %% [markdown]
# `M.t()` is a view with swapped strides, so its elements are no longer in row order in memory:
# it is not *contiguous*, and `.view(-1)` refuses it. `.contiguous()` and `.clone()` make copies.

# %%
T = M.t()  # (4, 3) view with strides (1, 4)
print("T strides", T.stride(), "contiguous:", T.is_contiguous())
try:
    T.view(-1)
except RuntimeError as err:
    print("T.view(-1) fails:", str(err).split(".")[0])
T_copy = T.contiguous()  # (4, 3) a fresh, row-ordered copy (reshape would do this for you)
M_copy = M.clone()  # (3, 4) a copy with the same layout
M_copy[0, 0] = -1
T_copy[0, 0] = -2
copies_independent = (
    T_copy.data_ptr() != X.data_ptr() and M_copy.data_ptr() != X.data_ptr() and X[0].item() == 100
)
lesson.record("copies_are_independent", float(copies_independent), min=1)

# %% [markdown]
# What to notice: a view is cheap but aliases its source, so an in-place write shows up in both.
# Call `.clone()` when you want to keep a value that something else will later change.
#
# ## NumPy interop
#
# On the CPU, `torch.from_numpy(array)` and `tensor.numpy()` share memory: no copy is made, and a
# change to one is seen by the other. `torch.tensor(array)` always copies.

# %%
array = np.zeros(3, dtype=np.float32)
shared = torch.from_numpy(array)  # (3,) float32 over the same buffer
copied = torch.tensor(array)  # (3,) its own memory
array[0] = 7.0
back = shared.numpy()  # a NumPy view of the tensor's memory: still no copy
back[1] = 8.0
print("shared:", shared.tolist(), " copied:", copied.tolist(), " array:", array.tolist())
numpy_shares = shared[0].item() == 7.0 and array[1] == 8.0 and copied[0].item() == 0.0
lesson.record("numpy_shares_memory", float(numpy_shares), min=1)
# A GPU tensor has no NumPy view: bring it back first, d.cpu().numpy() (which copies).
print("from the device:", d.cpu().numpy().shape)

# %% [markdown]
# ## Real data: normalising digits with one broadcast
#
# scikit-learn's digits are 8x8 grey images in [0, 1]. Neural networks train better on inputs with
# mean 0 and standard deviation 1, per pixel. With `keepdim=True` the mean keeps shape
# `(1, 1, 8, 8)`, which broadcasts against the whole batch `(N, 1, 8, 8)`.

# %%
digits = load_dataset("digits", split="train")
lesson.uses_data("digits", digits.source)
images = digits.x.to(device)  # (N, 1, 8, 8) float32 in [0, 1]
mean = images.mean(dim=0, keepdim=True)  # (1, 1, 8, 8): one mean per pixel
std = images.std(dim=0, keepdim=True)  # (1, 1, 8, 8)
# Border pixels are 0 in every image, so their std is 0: clamp to avoid dividing by zero.
normalised = (images - mean) / std.clamp_min(1e-6)  # (N, 1, 8, 8)
varying = std[0] > 1e-6  # (1, 8, 8) the pixels that carry information
print(f"{len(digits)} images {tuple(images.shape)}; {int((~varying).sum())} of 64 pixels are constant")
lesson.record("normalised_mean_abs", normalised.mean(dim=0).abs().max(), max=1e-4)
lesson.record("normalised_std", normalised.std(dim=0)[varying].mean(), min=0.999, max=1.001)

# %%
panels = torch.cat([mean, std / std.max(), images[:2], (normalised[:2] + 3) / 6])  # (6, 1, 8, 8)
labels = ["mean", "std (scaled)", "image 0", "image 1", "normalised 0", "normalised 1"]
lesson.savefig(image_grid(panels, labels, ncols=6), "digits_normalised")

# %% [markdown]
# What to notice: the normalised mean is 0 to within float32 rounding and the std is 1 on every
# pixel that varies. The statistics come from the training split only: a test set is normalised
# with these same numbers, never with its own.
#
# ## Autograd
#
# A tensor with `requires_grad=True` makes PyTorch record every operation on it. `backward()` then
# walks that record backwards and **adds** d(output)/d(tensor) into `tensor.grad`.

# %%
w = torch.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
loss = (w**2).sum()  # d loss / d w = 2 w
loss.backward()
first_grad = w.grad.clone()  # clone: w.grad is updated in place by the next backward
print("grad after one backward:", first_grad.tolist(), " grad_fn of loss:", loss.grad_fn.name())
(w**2).sum().backward()  # a second backward adds to w.grad instead of replacing it
print("grad after two backwards:", w.grad.tolist())
lesson.record("grad_accumulates", float(torch.allclose(w.grad, 2 * first_grad)), min=1)
w.grad.zero_()  # what optimizer.zero_grad() does before every training step

# %% [markdown]
# Evaluation and weight updates must not be recorded: `torch.no_grad()` turns recording off, and
# `detach()` gives a tensor that shares the data but is cut off from the graph.

# %%
with torch.no_grad():
    w_doubled = w * 2  # not recorded: no grad_fn, cannot be backpropagated through
w_frozen = w.detach()  # shares w's memory, but requires_grad is False
print("no_grad result requires_grad:", w_doubled.requires_grad, " grad_fn:", w_doubled.grad_fn)
no_graph = not w_doubled.requires_grad and w_doubled.grad_fn is None and not w_frozen.requires_grad
lesson.record("no_grad_builds_no_graph", float(no_graph and w_frozen.data_ptr() == w.data_ptr()), min=1)

# %% [markdown]
# What to notice: gradients accumulate on purpose (it lets you sum gradients over several small
# batches), so a training loop zeroes them every step. Forgetting `zero_grad` is a classic bug.
#
# ## Checking a gradient against finite differences
#
# The central difference `(f(x + eps) - f(x - eps)) / (2 eps)` approximates a derivative with an
# error of order `eps**2`. In float64 with `eps = 1e-6` it agrees with autograd to about 1e-10.
# MPS has no float64, so on a Mac this check runs on the CPU.


# %%
def central_difference(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float
) -> torch.Tensor:
    """Gradient of scalar f at x, element i at a time: (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)."""
    x = x.detach()
    grad = torch.zeros_like(x)
    with torch.no_grad():
        for i in range(x.numel()):
            step = torch.zeros_like(x)
            step.view(-1)[i] = eps  # view(-1) writes into step itself, whatever its shape
            grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


check_device = torch.device("cpu") if device.type == "mps" else device
X_check = torch.randn(16, 5, dtype=torch.float64, device=check_device)  # (16, 5)
y_check = torch.rand(16, dtype=torch.float64, device=check_device)  # (16,)


def squared_error(w: torch.Tensor) -> torch.Tensor:  # w: (5,) -> scalar
    y_hat = torch.sigmoid(X_check @ w)  # (16,)
    return ((y_hat - y_check) ** 2).mean()


w_check = torch.randn(5, dtype=torch.float64, device=check_device, requires_grad=True)
squared_error(w_check).backward()
numeric = central_difference(squared_error, w_check, cfg.fd_eps)
max_diff = (numeric - w_check.grad).abs().max()
print("autograd:", [f"{g:.10f}" for g in w_check.grad.tolist()])
print("numeric: ", [f"{g:.10f}" for g in numeric.tolist()])
lesson.record("finite_difference_max_abs_diff", max_diff, max=1e-6)
passed = torch.autograd.gradcheck(squared_error, (w_check,), eps=cfg.fd_eps, atol=1e-6)
lesson.record("gradcheck_passed", float(passed), min=1)

# %% [markdown]
# What to notice: `gradcheck` does the same thing, for every input and output, and raises an error
# with both Jacobians when they differ. It wants float64: in float32 the rounding error of
# `f(x + eps) - f(x - eps)` divided by `2 eps` swamps the answer. This is how to test any backward
# pass written by hand, such as the one in lesson 02.
#
# ## CPU versus GPU: timing a matrix multiply
#
# GPU calls are **asynchronous**: `A @ B` returns as soon as the work is queued. A timer must wait
# for the queue to drain (`synchronize`), and the first call, which pays for setup, is not timed.


# %%
def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the work queued so far (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_matmul(n: int, device: torch.device, repeats: int) -> float:
    """Median seconds for one (n, n) @ (n, n) float32 product on device, after a warm-up call."""
    A = torch.randn(n, n, device=device)  # (n, n)
    B = torch.randn(n, n, device=device)  # (n, n)
    A @ B  # warm-up: kernel selection, memory allocation, lazy initialisation
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        A @ B
        synchronize(device)  # without this we would time the queueing, not the work
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


n = cfg.matmul_size
flops = 2 * n**3  # n * n outputs, each n multiplies and n adds
cpu_seconds = time_matmul(n, torch.device("cpu"), cfg.timing_repeats)
print(f"CPU ({torch.get_num_threads()} threads): {n}x{n} matmul {cpu_seconds * 1e3:.2f} ms, "
      f"{flops / cpu_seconds / 1e9:.1f} GFLOP/s")  # fmt: skip
if device.type in ("cuda", "mps"):
    gpu_seconds = time_matmul(n, device, cfg.timing_repeats)
    print(f"{device}: {gpu_seconds * 1e3:.3f} ms, {flops / gpu_seconds / 1e12:.2f} TFLOP/s, "
          f"{cpu_seconds / gpu_seconds:.1f}x the CPU")  # fmt: skip
else:
    print(f"GPU timing skipped: the lesson runs on {device} (no CUDA or MPS device was found or chosen).")

# %% [markdown]
# What to notice: on a data-centre GPU the full-size product is tens of times faster than on a
# CPU; at the quick size (256) launch latency dominates and the gap shrinks or vanishes. Apple CPUs
# have a matrix unit of their own, so on a Mac the two can be close at any size. Timings depend on
# the hardware and on what else runs (the header line says which device), so they are printed, not
# recorded as outcomes: compare them only on the same, otherwise idle, machine.
#
# ## What you measured
#
# Each outcome below is checked against the range this lesson expects; `tests/fundamentals/
# test_01_pytorch_basics.py` asserts them again.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Each cell below holds a stub: read its docstring, replace `raise NotImplementedError` with your
# code, then run the check cell at the end (or `dlkit check fundamentals/01` in a terminal). The
# checks compare your code with `torch.cdist`, `F.one_hot` and autograd on small random inputs.

# %% tags=["exercise"]
import torch


def pairwise_distances(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Return the (N, M) Euclidean distances between the rows of A (N, D) and B (M, D), no loops.

    Give A a dimension of size 1 so that `A - B` broadcasts to (N, M, D), then reduce over D. The
    check compares it with `torch.cdist(A, B)`.
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return a float32 (N, num_classes) tensor with a 1 at [i, y[i]] and 0 elsewhere (y: (N,) int64).

    Start from zeros and write the ones with one indexing assignment: `out[rows, y]` with `rows =
    torch.arange(N)` picks one element per row (what does `out[:, y]` pick?). Without `F.one_hot`;
    the check compares your result with it.
    """
    raise NotImplementedError


# %% tags=["exercise"]
from collections.abc import Callable  # noqa: F811 - the exercise cell runs on its own

import torch


def numerical_jacobian(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Return the (m, n) Jacobian `J[j, i] = d f(x)[j] / d x[i]` of f: (n,) -> (m,), without autograd.

    Column i is the central difference `(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`, as in
    `central_difference` above; leave x itself unchanged. The check compares it with
    `torch.autograd.functional.jacobian` in float64.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
