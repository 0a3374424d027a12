"""Train the character-level GPT for a budget of seconds and/or steps, and leave a run folder.

    python -m projects.text_generator train --preset cpu                  # 5 minutes on a 2-core CPU
    python -m projects.text_generator train --preset gpu                  # 30 s on one GPU (nanoGPT's config)
    python -m projects.text_generator train --quick                       # seconds, offline
    python -m projects.text_generator train --preset cpu --lr 2e-3 --n-layer 6   # any field is a flag
    python -m projects.text_generator train --run-name cpu --resume       # continue a killed run
    torchrun --nproc_per_node 2 -m projects.text_generator train --quick  # several processes (DDP)

The loop is ``dlkit.train.train_loop``: endless random windows of the text, a :class:`~dlkit.train.Budget`
of seconds (``--time-budget``) and/or steps (``--max-iters``), an evaluation every ``--eval-seconds``
of training (or ``--eval-interval`` steps) off the clock, a linear warmup then a cosine driven by the
fraction of the budget used (so the run ends decayed whenever the budget runs out), keep-best, and a
checkpoint at every evaluation that ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.config import flag
from dlkit.device import cpu_has_native_bf16, describe_device, get_device, resolve_amp_dtype, seed_everything
from dlkit.errors import UserError
from dlkit.optim import MuonAdamW, muon_param_groups
from dlkit.plots import plot_curves
from dlkit.project import TrainConfig as ProjectTrainConfig
from dlkit.project import parse_train_config, start_training
from dlkit.runs import RunFolder, load_trained
from dlkit.train import (
    Budget,
    Callback,
    Evaluation,
    LoopState,
    Selection,
    cleanup_distributed,
    is_main_process,
    train_loop,
    train_step,
)
from projects.text_generator.data import (
    CharData,
    Windows,
    choose_text,
    estimate_loss,
    get_batch,
    load_char_data,
    loss_report,
    split_loss,
)
from projects.text_generator.model import GPT, GPTConfig

__all__ = [
    "PRESETS",
    "QUICK",
    "TrainConfig",
    "char_loss",
    "cpu_recipe",
    "fit_gpt",
    "load_gpt",
    "lr_factor",
    "main",
    "make_optimizer",
    "parse",
    "run_of",
]

PROJECT = "text_generator"


@dataclass
class TrainConfig(ProjectTrainConfig):
    """Train a character-level GPT (nanoGPT-style); every field is a flag (--n-layer, --time-budget, ...)."""

    preset: str = flag(
        "auto", help="gpu (nanoGPT's shakespeare_char), cpu (5 CPU minutes) or auto (gpu on CUDA, else cpu)",
        choices=("auto", "cpu", "gpu"),
    )  # fmt: skip
    n_layer: int = flag(4, help="transformer blocks", min=1)
    n_head: int = flag(4, help="attention heads (--n-embd must be a multiple)", min=1)
    n_embd: int = flag(128, help="width of the residual stream", min=1)
    block_size: int = flag(64, help="context length in characters", min=2)
    dropout: float = 0.0
    bias: bool = flag(False, help="biases in the Linear and LayerNorm layers")
    batch_size: int = flag(16, help="windows per optimizer step (all processes together)", min=1)
    lr: float = flag(3e-3, help="AdamW's peak learning rate (the embedding and norms beside Muon)", above=0)
    min_lr_ratio: float = flag(0.1, help="the cosine ends at lr * this", min=0, max=1)
    warmup_iters: int = flag(100, help="steps of linear warmup", min=0)
    weight_decay: float = 0.1
    beta1: float = flag(0.9, help="AdamW's beta1", min=0, max=0.9999)
    beta2: float = flag(0.99, help="AdamW's beta2", min=0, max=0.9999)
    grad_clip: float = flag(1.0, help="max gradient norm (0: no clipping)", min=0)
    optimizer: str = flag(
        "muon", help="muon (the blocks' matrices; AdamW for the rest) or adamw", choices=("muon", "adamw")
    )
    muon_lr: float = flag(0.01, help="Muon's peak learning rate (same schedule as --lr)", above=0)
    time_budget: float = flag(
        300.0, help="seconds of training, evaluations not counted (0: --max-iters only)"
    )
    max_iters: int | None = flag(None, help="stop after this many optimizer steps", min=1)
    eval_interval: int = flag(0, help="evaluate every N steps (0: every --eval-seconds)", min=0)
    eval_seconds: float = flag(30.0, help="else evaluate every this many seconds of training", above=0)
    eval_batches: int = flag(
        20, help="fixed val batches of every evaluation (what keep-best compares)", min=1
    )
    final_eval_batches: int = flag(200, help="random val batches of nanoGPT's final estimate", min=1)
    keep_best: bool = flag(True, help="end on the weights of the best evaluation (nanoGPT's best checkpoint)")
    amp: bool | None = flag(None, help="bf16 autocast (default: where the hardware runs bf16 fast)")
    compile: bool | None = flag(None, help="torch.compile (default: on CUDA)")
    text_file: str = flag("", help="a UTF-8 text of your own instead of tiny shakespeare")
    max_chars: int | None = flag(None, help="train on the first N characters only", min=200)


# What each preset changes from the dataclass defaults (which are the native-bf16 CPU recipe).
GPU: dict[str, Any] = {
    # nanoGPT's config/train_shakespeare_char.py, with a 30 s budget instead of 5000 iterations.
    "n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.2, "batch_size": 64,
    "lr": 1e-3, "optimizer": "adamw", "warmup_iters": 100, "time_budget": 30.0, "eval_seconds": 5.0,
    "eval_batches": 50,
}  # fmt: skip
CPU_RECIPES: dict[str, dict[str, Any]] = {
    # Tuned on the course's 2-core CPU (AVX512-BF16) for a 5-minute budget: see README.md.
    "bf16": {},
    # A CPU without native bf16 (most laptops: AVX2) runs everything in float32, where a step of the
    # 0.80M model costs 1.6x its bf16 time (Muon's Newton-Schulz included): 96 wide (0.45M) runs 1.7x
    # the steps of 128 wide in the same CPU time and ends lower (README.md; DLKIT_CPU_BF16=0).
    "float32": {"n_embd": 96},
}
PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "cpu": lambda: dict(CPU_RECIPES[cpu_recipe()]),
    "gpu": lambda: dict(GPU),
}
QUICK: dict[str, Any] = {
    "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 16, "time_budget": 0.0,
    "max_iters": 30, "warmup_iters": 5, "eval_interval": 10, "eval_batches": 4, "final_eval_batches": 8,
    "max_chars": 20_000, "compile": False,
}  # fmt: skip


def cpu_recipe() -> str:
    """ "bf16" on a CPU that runs bf16 natively (AVX512-BF16, AMX), else "float32"."""
    return "bf16" if cpu_has_native_bf16() else "float32"


def _preset_of(preset: str, device: str) -> str:
    return ("gpu" if get_device(device).type == "cuda" else "cpu") if preset == "auto" else preset


def run_of(cfg: TrainConfig) -> RunFolder:
    """runs/text_generator/<--run-name>, by default the preset's name (with "-quick" in quick mode)."""
    preset = _preset_of(cfg.preset, cfg.device)
    return RunFolder.of(PROJECT, cfg.run_name or (f"{preset}-quick" if cfg.quick else preset), cfg.runs_dir)


def parse(argv: Sequence[str] | None) -> TrainConfig:
    """Dataclass defaults < the preset's < --quick's < the flags given; --resume: the run's config.json
    with only the flags given replaced."""

    def defaults(given: dict[str, Any]) -> dict[str, Any]:
        preset = _preset_of(given.get("preset", "auto"), given.get("device", "auto"))
        return {"preset": preset, **PRESETS.get(preset, dict)()}  # an unknown one: refused by its choices

    cfg = parse_train_config(TrainConfig, argv, run_of, quick=QUICK, defaults=defaults)
    if cfg.preset == "auto":
        cfg = dataclasses.replace(cfg, preset=_preset_of("auto", cfg.device))
    if not cfg.time_budget and not cfg.max_iters:
        raise UserError("no budget: give --time-budget SECONDS > 0 and/or --max-iters N")
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd} must be a multiple of --n-head {cfg.n_head}")
    return cfg


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias,
    )  # fmt: skip


def make_optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not on LayerNorm weights or biases), as nanoGPT;
    the fused CUDA kernel on a GPU. With ``optimizer="muon"``: Muon for the blocks' matrices at
    ``muon_lr`` (its Newton-Schulz in bf16 only where that is native: ``dlkit.device.fast_dtype``),
    AdamW for the embedding (= output layer) and norms. The AdamW groups come first, so that the
    ``lr`` of metrics.csv is ``--lr``'s schedule."""
    if cfg.optimizer not in ("adamw", "muon"):
        raise UserError(f"--optimizer must be adamw or muon, not {cfg.optimizer!r}")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "muon":
        groups = muon_param_groups(
            model, lr=cfg.lr, muon_lr=cfg.muon_lr, weight_decay=cfg.weight_decay, betas=betas
        )
        return MuonAdamW([*groups[1:], groups[0]])
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=device.type == "cuda")


def lr_factor(cfg: TrainConfig, step: int, used: float) -> float:
    """The factor on every group's peak lr: a linear warmup over the first ``warmup_iters`` steps, times
    a cosine from 1 to ``min_lr_ratio`` over ``used`` (the fraction of the budget used, 0..1)."""
    warmup = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(used, 0.0), 1.0)))
    return warmup * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def char_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, T, V) next-character logits against (B, T) ids, in float32."""
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


def warm_up(cfg: TrainConfig, model: GPT, net: nn.Module, data: CharData, steps: int = 5) -> float:
    """Compile outside the clock: a few training steps and an evaluation batch (the train and eval
    graphs), then the weights back to a fresh initialisation (in place: the graphs are reused).
    Returns the seconds it took."""
    t0, device = time.perf_counter(), data.train.device
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    optimizer = make_optimizer(cfg, model, device)
    net.train()
    for _ in range(steps):
        batch = get_batch(data.train, cfg.block_size, cfg.batch_size)
        train_step(
            net, batch, char_loss, optimizer, amp_dtype=amp_dtype, clip_grad_norm=cfg.grad_clip or None
        )
    estimate_loss(net, data.val, cfg.block_size, cfg.batch_size, 1, amp_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seed_everything(cfg.seed)
    model.reset_parameters()
    return time.perf_counter() - t0


def fit_gpt(
    cfg: TrainConfig, data: CharData, device: torch.device, *, run: RunFolder | None = None,
    callbacks: Sequence[Callback] = (), verbose: bool = True, model: GPT | None = None,
) -> tuple[GPT, LoopState, dict[str, Any]]:  # fmt: skip
    """Build the GPT for ``data`` (already on ``device``) and train it per ``cfg``; return the model (on
    the weights it kept), the loop's state and the final metrics.

    Every evaluation's ``val_loss`` is the same estimate: the mean cross-entropy over ``eval_batches``
    fixed batches of validation windows, in the training dtype. The final metrics add, for the
    weights kept, the loss over the whole validation split (``val_loss_whole_split``, float32, the
    number the README's goals use) and nanoGPT's estimate on ``final_eval_batches`` other random
    batches (``val_loss_random``). ``model``: train this GPT instead of a new one (it must fit ``cfg``)."""
    model = (model if model is not None else GPT(model_config(cfg, len(data.vocab)))).to(device)
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    net = torch.compile(model) if use_compile else model
    compile_seconds = warm_up(cfg, model, net, data) if use_compile else 0.0
    optimizer = make_optimizer(cfg, model, device)
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    if verbose and is_main_process():
        dtype = str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32"
        compiled = f"; compiled in {compile_seconds:.1f} s" if use_compile else ""
        print(
            f"GPT {cfg.n_layer} layers x {cfg.n_embd} wide, context {cfg.block_size}: "
            f"{model.num_parameters() / 1e6:.2f}M parameters; {cfg.optimizer}, {dtype} on "
            f"{describe_device(device)}{compiled}"
        )

    def validate(module: nn.Module) -> dict[str, float]:
        return {
            "val_loss": estimate_loss(
                module, data.val, cfg.block_size, cfg.batch_size, cfg.eval_batches, amp_dtype
            )
        }

    every = {"every_steps": cfg.eval_interval} if cfg.eval_interval else {"every_seconds": cfg.eval_seconds}
    windows = Windows(data.train, cfg.block_size, cfg.batch_size)
    state = train_loop(
        model, optimizer, windows, loss_fn=char_loss, device=device,
        budget=Budget(seconds=cfg.time_budget or None, steps=cfg.max_iters),
        evaluation=Evaluation(validate, **every), schedule=lambda step, used: lr_factor(cfg, step, used),
        selection=Selection("val_loss", keep_best=cfg.keep_best), amp=cfg.amp,
        clip_grad_norm=cfg.grad_clip or None, run=run, resume=cfg.resume and run is not None, config=cfg,
        callbacks=callbacks, net=net, verbose=verbose,
    )  # fmt: skip
    kept = next(r for r in state.rows if r["step"] == (state.best_step if cfg.keep_best else state.step))
    whole = split_loss(model, data.val, cfg.block_size, cfg.batch_size)  # the kept weights, float32
    random = estimate_loss(model, data.val, cfg.block_size, cfg.batch_size, cfg.final_eval_batches, seed=4321)
    tokens = state.examples * cfg.block_size
    metrics = {
        "val_loss": kept["val_loss"],
        "val_loss_is": f"mean cross-entropy (nats/char) over {cfg.eval_batches} fixed batches of "
        f"{cfg.batch_size} validation windows of {cfg.block_size}: every row of metrics.csv",
        "val_loss_whole_split": whole,
        "val_perplexity_whole_split": loss_report(whole)["perplexity"],
        "val_loss_whole_split_is": "mean cross-entropy (nats/char, float32) of the kept weights over the "
        "whole validation split in non-overlapping windows",
        "val_loss_random": random,
        "train_loss": state.rows[-1].get("train_loss"),
        "steps": state.step, "kept_step": kept["step"], "seconds": state.seconds, "tokens": tokens,
        "tokens_per_second": tokens / max(state.seconds, 1e-9), "compile_seconds": compile_seconds,
        "dtype": str(amp_dtype).removeprefix("torch.") if amp_dtype else "float32",
        "device": describe_device(device),
    }  # fmt: skip
    if verbose and is_main_process():
        print(f"val loss {whole:.4f} over the whole validation split (perplexity {math.exp(whole):.2f}; "
              f"nanoGPT's estimate {random:.4f}), weights of step {kept['step']} of {state.step}, "
              f"{state.seconds:.1f} s of training")  # fmt: skip
    return model, state, metrics


def model_info(cfg: TrainConfig, data: CharData, text: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """model_info.json: what evaluate, export and predict need to rebuild and feed the model. ``data``
    says how to load the same text again; ``dataset`` names it without a path."""
    return {
        "model": "gpt",
        "model_config": model_config(cfg, len(data.vocab)).to_dict(),
        "vocab": data.vocab.to_dict(),
        "data": {"text": text, "text_file": cfg.text_file, "max_chars": cfg.max_chars},
        "dataset": data.name,
        "source": data.source,
        "split": "first 90% train, last 10% validation (nanoGPT's)",
        "metrics": metrics,
    }


def build_gpt(info: dict[str, Any]) -> GPT:
    return GPT(GPTConfig(**info["model_config"]))


def load_gpt(run_dir: str, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The trained model of a run folder (eval mode, on ``device``) and its model_info.json."""
    model, info = load_trained(run_dir, build_gpt, device)
    return model, info  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train per the flags; return model_info (with the final metrics). ``callbacks`` are
    ``dlkit.train.Callback`` objects (the tests stop or sabotage a run from one)."""
    cfg = parse(argv)
    run = run_of(cfg)
    try:
        device = start_training(cfg, run)  # joins torchrun's process group when launched by it
        with contextlib.redirect_stdout(sys.stdout if is_main_process() else io.StringIO()):
            text = choose_text(cfg.quick, cfg.text_file)  # prints which text it chose: once
        data = load_char_data(text, max_chars=cfg.max_chars, text_file=cfg.text_file)
        if is_main_process():
            print(f"{data.source}: {len(data.train):,} train, {len(data.val):,} val characters, "
                  f"{len(data.vocab)} distinct")  # fmt: skip
            run.write_info(model_info(cfg, data, text, {}))
        model, state, metrics = fit_gpt(cfg, data.to(device), device, run=run, callbacks=callbacks)
        info = model_info(cfg, data, text, metrics)
        if is_main_process():
            run.write_info(info)
            curves = {
                "train loss": state.history.column("train_loss"),
                "val loss": state.history.column("val_loss"),
            }
            run.savefig(plot_curves(curves, title="cross-entropy per character", xlabel="evaluation"), "loss")
            print(f"run folder: {run.path}")
        return info
    finally:
        cleanup_distributed()  # a no-op without torchrun


if __name__ == "__main__":
    main()
