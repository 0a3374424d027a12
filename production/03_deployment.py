# %% [markdown]
# # Production 03 · Deployment: from a trained model to a service
#
# A trained model is a `state_dict` in a training script's memory. A service needs files that load
# without that script, that cannot run code when opened, that compute exactly what the model computed,
# and a server that answers many requests at once in bounded time and memory. We take a small
# classifier all the way, and measure each step on this machine.
#
# **What you will learn**
# - a release folder (`dlkit.export`): safetensors weights + JSON metadata, an ONNX graph and a
#   `torch.export` program, each checked against the eager model;
# - why `torch.load(..., weights_only=True)` and safetensors: a pickle runs code when it is loaded;
# - dynamic int8 quantization (ONNX Runtime): its size, accuracy and latency cost;
# - serving with FastAPI (`dlkit.serve`): batching concurrent requests, its latency/throughput
#   trade-off, and the limits that keep memory bounded.
#
# Latencies depend on the machine and its load: they are printed and written to `table.md`, never
# checked. What is checked holds anywhere: exported outputs equal the eager ones, the server answers
# what the model says, int8 stays within a stated accuracy loss.

# %%
from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from torch import nn

from dlkit import perf
from dlkit.config import flag
from dlkit.data import choose_dataset, load_train_test, split
from dlkit.device import seed_everything
from dlkit.export import (
    export_onnx_checked,
    export_program,
    load_program,
    load_release,
    onnx_session,
    save_release,
    staged_release,
)
from dlkit.lesson import Lesson, LessonConfig, exactly
from dlkit.serve import BatchedService, create_app, read_json_request
from dlkit.train import TensorBatches, fit


@dataclass
class Config(LessonConfig):
    num_train: int = flag(20_000, help="training images, validation included (0: all)", min=0)
    num_test: int = flag(0, help="test images (0: all)", min=0)
    num_epochs: int = 8
    hidden: int = flag(256, help="units of each of the two hidden layers", min=8, max=8192)
    threads: int = flag(
        1, help="CPU threads for the latency table (1: steady on shared cores)", min=1, max=256
    )
    requests: int = flag(600, help="requests of each load test", min=16, max=1_000_000)
    concurrency: int = flag(16, help="requests in flight at once in the load tests", min=2, max=1024)
    max_batch: int = flag(32, help="the server's largest batch", min=2, max=4096)
    time_limit: float = flag(30.0, help="seconds each load test may take at most", above=0, max=3600)


quick = {
    "num_train": 2000,
    "num_test": 300,
    "num_epochs": 10,
    "hidden": 128,
    "requests": 96,
    "time_limit": 10.0,
}
lesson = Lesson("production/03_deployment", Config, quick=quick)
cfg, device = lesson.cfg, torch.device("cpu")  # served on the CPU, as most small models are
name = choose_dataset("fashion_mnist", "digits", quick=lesson.quick)
train_all, test_data = load_train_test(name, num_train=cfg.num_train, num_test=cfg.num_test, seed=cfg.seed)
val_data, train_data = split(train_all, len(train_all) // 6, seed=cfg.seed)  # model checks use val only
lesson.uses_data(name, f"train: {train_data.source}; test: {test_data.source}")
X_train, X_val, X_test = (d.x.flatten(1) for d in (train_data, val_data, test_data))  # (N, pixels)
num_inputs, classes = X_train.shape[1], list(train_data.classes)

# %% [markdown]
# ## The model, trained as lessons 04-05 taught
#
# An MLP on the flattened images: small enough to serve from one CPU core, and made of `Linear`
# layers, which is what dynamic quantization speeds up. Its architecture is a name and a few numbers,
# so that a release can say how to rebuild it.


# %%
def build_model(metadata: dict) -> nn.Module:
    """The untrained MLP a release's metadata describes ({"architecture": {"inputs", "hidden", ...}})."""
    a = metadata["architecture"]
    return nn.Sequential(nn.Linear(a["inputs"], a["hidden"]), nn.ReLU(), nn.Linear(a["hidden"], a["hidden"]),
                         nn.ReLU(), nn.Linear(a["hidden"], a["classes"]))  # fmt: skip


seed_everything(cfg.seed)
architecture = {"name": "mlp", "inputs": num_inputs, "hidden": cfg.hidden, "classes": len(classes)}
metadata = {"architecture": architecture, "classes": classes, "dataset": name,
            "preprocessing": "pixels in [0, 1], flattened"}  # fmt: skip
model = build_model(metadata)
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
history = fit(model, optimizer, TensorBatches(X_train, train_data.y, 128, shuffle=True),
              TensorBatches(X_val, val_data.y, 512), loss_fn=F.cross_entropy, num_epochs=cfg.num_epochs,
              device=device, run_dir=lesson.run_dir / "fit", verbose=False)  # fmt: skip
model.eval()
print(f"validation accuracy after {cfg.num_epochs} epochs: {history.last['val_acc']:.3f}")

# %% [markdown]
# ## A release folder, and three ways to run it
#
# `save_release` writes `model.safetensors` (tensors only) and `model.json` (how to rebuild and use
# them: architecture, classes, preprocessing, torch version, the weights' sha256). `export_onnx_checked`
# writes an ONNX graph (for ONNX Runtime, C++, browsers) and refuses to if ONNX Runtime's outputs on
# real examples differ from PyTorch's; `export_program` saves a `torch.export` program, PyTorch's
# successor of TorchScript: the graph, without the Python code that defined it. `staged_release`
# replaces the folder only when everything succeeded.

# %%
release = lesson.run_dir / "release"
with staged_release(release) as staging:
    onnx_info = export_onnx_checked(model, X_val[:256], staging, source=f"256 validation images of {name}")
    export_program(model, X_val[:2], staging / "model.pt2")
    save_release(model, {**metadata, **onnx_info}, staging)
print({p.name: f"{p.stat().st_size / 1024:.1f} KiB" for p in sorted(release.iterdir())})

reloaded, _ = load_release(release, build_model)
program = load_program(release / "model.pt2")
session = onnx_session(release / "model.onnx", num_threads=cfg.threads)
with torch.no_grad():
    eager = model(X_val)  # (N, classes): what every export must reproduce
    diffs = {
        "safetensors": (reloaded(X_val) - eager).abs().max().item(),
        "torch.export": (program(X_val) - eager).abs().max().item(),
        "onnx": float(np.abs(session.run(None, {"input": X_val.numpy()})[0] - eager.numpy()).max()),
    }
print("max |export - eager| over the validation set:", {k: f"{v:.1e}" for k, v in diffs.items()})
lesson.record("safetensors_max_abs_diff", diffs["safetensors"], max=0.0)  # the same bits
lesson.record("export_program_max_abs_diff", diffs["torch.export"], max=1e-5)
lesson.record("onnx_max_abs_diff", diffs["onnx"], max=1e-4)  # another kernel library: rounding differs

# %% [markdown]
# What to notice: the safetensors weights give *bit-identical* outputs; the graphs differ by float
# rounding only (another order of additions, other kernels), which `export_onnx_checked` bounds.
#
# ## Why not a pickle
#
# `torch.save` pickles, and unpickling calls whatever functions the file names. A checkpoint from a
# stranger can run any command when you `torch.load` it. Here the "attack" only prints a line:


# %%
class Payload:
    def __reduce__(self):  # pickle stores "call print(...)", and unpickling calls it
        return print, ("this line was printed by LOADING a file: it could have been any command",)


torch.save({"weights": model.state_dict(), "note": Payload()}, lesson.run_dir / "untrusted.pt")
with contextlib.redirect_stdout(io.StringIO()) as out:
    torch.load(lesson.run_dir / "untrusted.pt", weights_only=False)  # trusting the file: the code runs
print("weights_only=False ran:", out.getvalue().strip())
try:
    torch.load(lesson.run_dir / "untrusted.pt", weights_only=True)  # tensors and plain types only
    refused = False
except pickle.UnpicklingError as e:
    refused = True
    print("weights_only=True refused it:", str(e).splitlines()[0][:100])
lesson.record("pickle_ran_code", float("LOADING" in out.getvalue()), **exactly(1))
lesson.record("weights_only_refused_code", float(refused), **exactly(1))

# %% [markdown]
# A safetensors file is a JSON header and raw tensor bytes: there is nothing in it to call.
# `weights_only=True` (the default since torch 2.6) is the safe way to read checkpoints you trust less
# than your own code; a release uses safetensors, and keeps everything else in JSON.
#
# ## Dynamic int8 quantization
#
# Dynamic quantization stores each `Linear` weight as int8 with a scale (4x smaller) and quantizes the
# activations on the fly, batch by batch. ONNX Runtime does it on the exported graph
# (`torch.ao.quantization` is deprecated; `torchao` is its successor for PyTorch models). The cost is
# accuracy, which we measure on the validation set before deciding to ship it.

# %%
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

int8_path = lesson.run_dir / "model.int8.onnx"
with contextlib.redirect_stderr(io.StringIO()):  # its advice to pre-process applies to convnets
    quantize_dynamic(release / "model.onnx", int8_path, weight_type=QuantType.QInt8)
int8 = onnx_session(int8_path, num_threads=cfg.threads)
int8_logits = torch.from_numpy(int8.run(None, {"input": X_val.numpy()})[0])
float_error = (eager.argmax(1) != val_data.y).float().mean().item()
int8_error = (int8_logits.argmax(1) != val_data.y).float().mean().item()
size_ratio = int8_path.stat().st_size / (release / "model.onnx").stat().st_size
print(f"validation error: float32 {float_error:.4f}, int8 {int8_error:.4f}; file size {size_ratio:.2f}x")
lesson.record("int8_val_error_increase", int8_error - float_error, max=0.02)
lesson.record("int8_logit_max_abs_diff", (int8_logits - eager).abs().max(), min=1e-4)  # it did quantize
lesson.record("int8_size_ratio", size_ratio, max=0.45)

# %% [markdown]
# ## Latency: one request vs a batch
#
# One example at a time measures latency (what a user waits); a batch of 256 measures throughput
# (what a server can do per second). Same model, four runtimes, `dlkit.perf.time_per_call` on
# `--threads` thread(s).

# %%
runtimes = {
    "PyTorch eager": lambda x: model(x),
    "torch.export": lambda x: program(x),
    "ONNX Runtime": lambda x: session.run(None, {"input": x.numpy()}),
    "ONNX Runtime int8": lambda x: int8.run(None, {"input": x.numpy()}),
}
latency_rows = []
with torch.no_grad(), perf.switches(threads=cfg.threads):
    for label, run in runtimes.items():
        one = perf.time_per_call(lambda: run(X_val[:1]), device=device, warmup=5, repeats=5, calls=50)  # noqa: B023
        batch = perf.time_per_call(lambda: run(X_val[:256]), device=device, warmup=2, repeats=5)  # noqa: B023
        gain = f"{one * 256 / batch:.1f}x"  # 256 single calls vs one batch of 256
        latency_rows.append({"runtime": label, "1 example, ms": 1000 * one, "batch of 256, ms": 1000 * batch,
                             "examples/s, batched": 256 / batch, "batching gain": gain})  # fmt: skip
print(perf.markdown_table(latency_rows, list(latency_rows[0])))

# %% [markdown]
# What to notice: for a small model, one example costs mostly fixed overhead (Python, dispatch,
# allocation), so a batch of 256 costs far less than 256 single calls; ONNX Runtime has less overhead
# than eager PyTorch, and a `torch.export` module more (it checks its inputs' shapes on every call).
# A server gets the batching gain only if it groups concurrent requests into batches.
#
# ## A service
#
# `dlkit.serve.create_app` gives the app the parts every service needs: the model loaded once at
# start-up, a body-size limit (413 before reading a large body), errors as JSON with a reason,
# `GET /health`. `BatchedService` puts a `MicroBatcher` in front of the model: requests that arrive
# while the model is busy run together as one batch, up to `max_batch`. FastAPI's `TestClient` runs the
# app in this process: no port, no network, the same code a real server runs.


# %%
def make_app(max_batch: int, seen: list[int]):
    """The service: POST /predict {"pixels": [...]} -> {"class", "probability"}; records batch sizes."""

    def batch_fn(xs: list[torch.Tensor]) -> list[tuple[int, float]]:
        seen.append(len(xs))
        with torch.no_grad():
            p = F.softmax(reloaded(torch.stack(xs)), dim=1)  # (B, classes)
        return [(int(i), float(v)) for v, i in zip(*p.max(dim=1), strict=True)]

    app = create_app(title="MLP classifier", load=lambda: BatchedService(metadata, batch_fn, max_batch),
                     max_body_bytes=64 * num_inputs + 1024)  # fmt: skip

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        body = await read_json_request(request, example='{"pixels": [0.0, 0.5, ...]}')
        pixels = body.get("pixels") if isinstance(body, dict) else None
        if not isinstance(pixels, list) or len(pixels) != num_inputs:
            raise HTTPException(422, f'send {{"pixels": [...]}} with {num_inputs} numbers in [0, 1]')
        label, probability = await request.app.state.model.batcher.submit(torch.tensor(pixels).float())
        return {"class": classes[label], "probability": probability}

    return app


bodies = [{"pixels": X_val[i % len(X_val)].tolist()} for i in range(cfg.requests)]
with TestClient(make_app(cfg.max_batch, [])) as client:
    answers = [client.post("/predict", json=b).json()["class"] for b in bodies[:64]]
    wrong_size = client.post("/predict", json={"pixels": [0.0] * 3}).status_code
    too_big = client.post(
        "/predict", content=b"[" + b"0," * 100_000 + b"0]", headers={"content-type": "application/json"}
    ).status_code
expected = [classes[i] for i in eager[:64].argmax(1)]
print(f"{sum(a == e for a, e in zip(answers, expected, strict=True))}/64 answers equal the model's; "
      f"3 pixels -> HTTP {wrong_size}; a 200 kB body -> HTTP {too_big}")  # fmt: skip
lesson.record("served_answers_equal_model", float(answers == expected), **exactly(1))
lesson.record("bad_requests_refused", float(wrong_size == 422) + float(too_big == 413), **exactly(2))

# %% [markdown]
# ## Batching under load
#
# `dlkit.perf.load_test_in_process` sends `--requests` requests from `--concurrency` threads and stops
# after `--time-limit` seconds at most: a load test is bounded in count and in time. Without batching
# (`max_batch=1`) every request waits for all those ahead of it; with it, the queue drains a batch at
# a time. Memory stays bounded too: a body is at most the limit above, a batch at most `max_batch`.

# %%
load_rows = []
with perf.switches(threads=cfg.threads):
    for max_batch, concurrency in [(1, 1), (1, cfg.concurrency), (cfg.max_batch, cfg.concurrency)]:
        seen: list[int] = []
        with TestClient(make_app(max_batch, seen)) as client:
            post = lambda b: client.post("/predict", json=b)  # noqa: B023, E731
            result = perf.load_test_in_process(
                post, bodies, concurrency=concurrency, time_limit=cfg.time_limit
            )
        batches = {"mean batch": sum(seen) / max(len(seen), 1), "largest batch": max(seen, default=0)}
        load_rows.append({"max_batch": max_batch, "concurrency": concurrency, **result.summary(), **batches})
print(perf.markdown_table(load_rows, list(load_rows[0])))
lesson.record("load_test_errors", sum(r["errors"] for r in load_rows), **exactly(0))
lesson.record("largest_batch_over_limit", max(r["largest batch"] - r["max_batch"] for r in load_rows), max=0)
model_share = latency_rows[0]["1 example, ms"] / load_rows[0]["p50_ms"]  # the model's part of a request
print(f"the model's forward pass is {model_share:.1%} of one request's time (p50, one request at a time)")

# %% [markdown]
# What to notice: many concurrent requests queue up (p50 and p95 grow with the queue), and with
# `max_batch` above 1 the model does see batches. But for this MLP the forward pass is a few percent
# of a request (printed above): JSON, HTTP handling and Python threads cost the rest, so batching
# cannot buy much here and its extra hand-over between threads may even cost throughput. Batching pays
# when the model is most of the time: a convnet on images (the image classifier project's load
# benchmark) or any model on a GPU. Measure the model's share first, then decide.
#
# **A container?** Podman is installed here, but building an image needs a base image from a
# container registry, which this machine cannot reach: no recipe is shipped that no test can build.
# The projects' `serve` commands (`python -m projects.image_classifier serve --release ...`) are what
# a container would run.
#
# ## The test set, once
#
# Everything above used the validation split; the shipped release meets the test set once, here.

# %%
with torch.no_grad():
    test_acc = (reloaded(X_test).argmax(1) == test_data.y).float().mean().item()
lesson.record("test_acc", test_acc, min=0.7, chance=1 / len(classes))
machine = perf.machine_line(device) + f"; {cfg.threads} thread(s)"
perf.write_tables(lesson.run_dir, lesson.name, machine, {"latency": latency_rows, "load test": load_rows})

# %% [markdown]
# ## What you measured
#
# A release whose safetensors weights reproduce the model bit for bit, whose ONNX and `torch.export`
# graphs agree to float rounding; a pickle that ran code on loading and `weights_only=True` refusing
# it; int8 weights at about a quarter of the size within 2 points of error; batching's latency and
# throughput (`table.md`); a service that answers what the model says and refuses bad input with a
# reason.

# %%
lesson.finish()

# %% [markdown]
# ## Exercises
# Fill in each stub, then run the check cell below (or `dlkit check production/03`). The checks use
# hand-worked arrival times and a model with dropout, exported with `torch.export`.


# %% tags=["exercise"]
def group_requests(arrivals: list[float], max_batch: int, max_wait: float) -> list[list[int]]:
    """Group requests into batches as a dynamic batcher does; return the batches as lists of indices.

    `arrivals` are sorted arrival times (seconds). A batch opens with the first request not yet
    batched and takes the next ones while it has fewer than `max_batch` and they arrive at most
    `max_wait` seconds after the request that opened it (a request exactly at the deadline joins).
    """
    raise NotImplementedError


# %% tags=["exercise"]
import torch


def max_export_diff(model, exported, inputs: torch.Tensor, batch_size: int = 64) -> float:
    """Return the largest |exported(x) - model(x)| over `inputs`, run in batches of `batch_size`.

    `exported` is a callable (a torch.export module, an ONNX session wrapped in a function) that
    returns a tensor. Compare what is deployed: the model in eval mode, without gradients. Return a
    Python float, the worst element over all batches.
    """
    raise NotImplementedError


# %%
lesson.check_exercises(globals())
