"""Train the character-level GPT on tiny shakespeare for a budget of seconds, and leave a run folder.

    python -m projects.text_generator train --preset cpu                  # 5 minutes on a 2-core CPU
    python -m projects.text_generator train --preset gpu                  # 60 s on one GPU (nanoGPT's config)
    python -m projects.text_generator train --preset cpu --lr 2e-3 --n-layer 6   # any field is a flag
    python -m projects.text_generator train --run-name cpu --resume       # continue a killed run

Training is budgeted by wall-clock time (``--time-budget``) and/or iterations (``--max-iters``): the
learning rate warms up linearly for ``--warmup-iters`` steps, then follows a cosine from ``--lr`` down
to ``lr * min_lr_ratio`` over the fraction of the budget used, so the run ends with a fully decayed
learning rate whenever the budget runs out. Evaluation, checkpointing and compilation are not counted.

The run folder (``runs/text_generator/<run-name>/``, under ``$DLKIT_RUNS`` when set) holds config.json,
metrics.csv (one row per evaluation), loss.png, checkpoint.pt (weights, optimizer state, RNG states, the
iteration and the seconds of budget used: ``--resume`` continues it) and model_info.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from dlkit.config import build_parser, config_to_dict, save_config
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.lesson import runs_root
from dlkit.metrics import CSVLogger
from dlkit.optim import MuonAdamW, muon_param_groups
from dlkit.plots import plot_curves, save_figure
from dlkit.text import CharVocab
from dlkit.train import resolve_amp_dtype
from projects.text_generator.data import (
    CharData,
    autocast,
    estimate_loss,
    get_batch,
    load_char_data,
    split_loss,
)
from projects.text_generator.model import GPT, GPTConfig

__all__ = [
    "PRESETS",
    "TrainConfig",
    "TrainState",
    "build_model",
    "config_from_argv",
    "load_trained",
    "lr_at",
    "main",
    "make_optimizer",
    "run_dir_of",
    "train_loop",
]


@dataclass
class TrainConfig:
    """Train a character-level GPT; every field is a flag (--n-layer, --time-budget, ...)."""

    preset: str = field(default="cpu", metadata={"help": "cpu or gpu: defaults for the fields not given"})
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = field(default=64, metadata={"help": "context length in characters"})
    dropout: float = 0.0
    bias: bool = False
    batch_size: int = 16
    lr: float = 3e-3  # AdamW's (all of it, or the embedding and norms beside Muon); 2e-3, 4.5e-3, 6e-3 worse
    min_lr_ratio: float = field(default=0.1, metadata={"help": "the cosine ends at lr * this"})
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0: no clipping)"})
    # Muon on the blocks' matrices at 0.01: 1.505 and 1.510 (seeds 0, 1) in 5 CPU minutes, AdamW 1.555, 1.557
    optimizer: str = field(
        default="muon", metadata={"help": "muon (the blocks' matrices; AdamW for the rest) or adamw"}
    )
    muon_lr: float = field(
        default=0.01,
        metadata={"help": "Muon's peak learning rate (same schedule as --lr); 0.005, 0.02 worse"},
    )
    time_budget: float = field(default=300.0, metadata={"help": "seconds of training (0: --max-iters only)"})
    max_iters: int | None = field(default=None, metadata={"help": "stop after this many steps"})
    eval_interval: int = field(default=0, metadata={"help": "evaluate every N steps (0: see --eval-seconds)"})
    eval_seconds: float = field(default=30.0, metadata={"help": "else evaluate every this many seconds"})
    eval_batches: int = field(default=20, metadata={"help": "val batches per evaluation during training"})
    final_eval_batches: int = field(default=200, metadata={"help": "val batches of the final val loss"})
    keep_best: bool = field(default=True, metadata={"help": "end on the weights of the best evaluation"})
    amp: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where it pays)"})
    compile: bool | None = field(default=None, metadata={"help": "torch.compile (default: on CUDA)"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch (0: torch's default)"})
    text_file: str = field(default="", metadata={"help": "a UTF-8 text of your own instead of shakespeare"})
    max_chars: int | None = field(default=None, metadata={"help": "train on the first N characters only"})
    run_name: str = field(default="", metadata={"help": "default: the preset's name"})
    runs_dir: str = field(default="", metadata={"help": "default: $DLKIT_RUNS/text_generator or runs/..."})
    resume: bool = field(default=False, metadata={"help": "continue the run folder's checkpoint"})
    quick: bool = field(default=False, metadata={"help": "a tiny model on 20k characters: seconds"})
    device: str = "auto"
    seed: int = 0


# What each preset changes from the dataclass defaults (which are the CPU preset's).
PRESETS: dict[str, dict[str, Any]] = {
    # Tuned on the course's 2-core CPU (AVX512-BF16) for a 5-minute budget: see README.md.
    "cpu": {},
    # nanoGPT's config/train_shakespeare_char.py, with a 60 s budget instead of 5000 iterations.
    "gpu": {
        "n_layer": 6,
        "n_head": 6,
        "n_embd": 384,
        "block_size": 256,
        "dropout": 0.2,
        "batch_size": 64,
        "lr": 1e-3,
        "optimizer": "adamw",
        "warmup_iters": 100,
        "time_budget": 30.0,
        "eval_seconds": 5.0,
        "eval_batches": 50,
    },  # fmt: skip
}
QUICK: dict[str, Any] = {
    "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 16, "time_budget": 0.0,
    "max_iters": 30, "warmup_iters": 5, "eval_interval": 10, "eval_batches": 4, "final_eval_batches": 8,
    "max_chars": 20_000, "compile": False,
}  # fmt: skip


def config_from_argv(argv: Sequence[str] | None) -> TrainConfig:
    """Dataclass defaults, then the preset's, then --quick's, then the flags given (which always win).

    With --resume, the run folder's config.json replaces all but the flags given.
    """
    given = vars(build_parser(TrainConfig, __doc__.splitlines()[0]).parse_args(argv))
    values = config_to_dict(TrainConfig())
    preset = given.get("preset", values["preset"])
    if preset not in PRESETS:
        raise SystemExit(f"--preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    values.update(PRESETS[preset])
    if given.get("quick", False):
        values.update(QUICK)
    values.update(given)
    cfg = TrainConfig(**values)
    saved = run_dir_of(cfg) / "config.json"
    if cfg.resume and saved.exists():
        values = {**json.loads(saved.read_text()), **given}
        cfg = TrainConfig(**values)
    return cfg


def run_dir_of(cfg: TrainConfig) -> Path:
    name = cfg.run_name or (f"{cfg.preset}-quick" if cfg.quick else cfg.preset)
    return (Path(cfg.runs_dir) if cfg.runs_dir else runs_root() / "text_generator") / name


def model_config(cfg: TrainConfig, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
        n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias,
    )  # fmt: skip


def build_model(cfg: TrainConfig, vocab_size: int, device: torch.device) -> tuple[GPT, nn.Module]:
    """(model, the module to call): the second is torch.compile'd when asked, or by default on CUDA."""
    model = GPT(model_config(cfg, vocab_size)).to(device)
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    return model, (torch.compile(model) if use_compile else model)


def make_optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not on LayerNorm weights or biases), as nanoGPT;
    the fused CUDA kernel on a GPU. With ``optimizer="muon"``: Muon for the blocks' matrices at
    ``muon_lr``, AdamW for the embedding (= output layer) and norms. Each group keeps its ``lr_scale``
    (its peak over ``lr``) for the schedule."""
    if cfg.optimizer not in ("adamw", "muon"):
        raise ValueError(f"--optimizer must be adamw or muon, not {cfg.optimizer!r}")
    if cfg.optimizer == "muon":
        betas = (cfg.beta1, cfg.beta2)
        groups = muon_param_groups(
            model, lr=cfg.lr, muon_lr=cfg.muon_lr, weight_decay=cfg.weight_decay, betas=betas
        )
        for group in groups:
            group["lr_scale"] = group["lr"] / cfg.lr
        return MuonAdamW(groups)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over the first ``warmup_iters`` steps, times a cosine from lr to lr * min_lr_ratio
    over ``progress`` (the fraction of the budget used, 0..1)."""
    warmup = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return cfg.lr * warmup * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


@dataclass
class TrainState:
    """Where a run is: steps taken, seconds of budget used, characters seen, one row per evaluation."""

    step: int = 0
    seconds: float = 0.0
    tokens: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf  # the lowest val loss of an evaluation during training, at best_step
    best_step: int = 0
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # a copy on the device

    def plain(self) -> dict[str, Any]:
        """For the checkpoint: everything but the weights (saved beside it)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "best_weights"}

    def progress(self, cfg: TrainConfig) -> float:
        """The fraction of the budget used: the larger of the time and the steps fractions."""
        fractions = []
        if cfg.time_budget > 0:
            fractions.append(self.seconds / cfg.time_budget)
        if cfg.max_iters is not None:
            fractions.append(self.step / max(cfg.max_iters, 1))
        if not fractions:
            raise ValueError("no budget: give --time-budget SECONDS > 0 and/or --max-iters N")
        return max(fractions)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(
    net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
    amp_dtype: torch.dtype | None, grad_clip: float,
) -> torch.Tensor:  # fmt: skip
    """One optimizer step on a batch of windows; returns the loss (a 0-d tensor, not synchronised)."""
    with autocast(x.device, amp_dtype):
        logits = net(x)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


EvalHook = Callable[[TrainState, dict[str, float]], None]


def train_loop(
    cfg: TrainConfig, net: nn.Module, optimizer: torch.optim.Optimizer, data: CharData,
    state: TrainState | None = None, *, on_eval: EvalHook | None = None, verbose: bool = True,
) -> TrainState:  # fmt: skip
    """Train ``net`` on ``data`` (already on its device) until the budget is used; evaluate (off the
    clock) every ``eval_interval`` steps or ``eval_seconds`` seconds, and once at the end with
    ``final_eval_batches`` batches. ``on_eval(state, row)`` runs after each evaluation (checkpoints)."""
    state = state or TrainState()
    device, amp_dtype = data.train.device, resolve_amp_dtype(cfg.amp, data.train.device)
    clock_every = 10 if device.type == "cuda" else 1  # a sync per step would starve the GPU
    loss_sum, loss_count, last_eval_at = torch.zeros((), device=device), 0, state.seconds
    net.train()
    _sync(device)
    t0, seconds0, done = time.perf_counter(), state.seconds, state.progress(cfg) >= 1.0
    while not done:
        lr = lr_at(cfg, state.step, state.progress(cfg))
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        x, y = get_batch(data.train, cfg.block_size, cfg.batch_size)
        loss_sum += train_step(net, optimizer, x, y, amp_dtype, cfg.grad_clip)
        state.step, state.tokens, loss_count = state.step + 1, state.tokens + x.numel(), loss_count + 1
        if state.step % clock_every == 0:
            _sync(device)
            state.seconds = seconds0 + time.perf_counter() - t0
        done = state.progress(cfg) >= 1.0
        due = (cfg.eval_interval > 0 and state.step % cfg.eval_interval == 0) or (
            cfg.eval_interval <= 0 and state.seconds - last_eval_at >= cfg.eval_seconds
        )
        if due or done:
            _sync(device)
            state.seconds = seconds0 + time.perf_counter() - t0  # the clock stops here
            val_loss = estimate_loss(
                net, data.val, cfg.block_size, cfg.batch_size, cfg.eval_batches, amp_dtype
            )
            if cfg.keep_best and val_loss < state.best_val:
                state.best_val, state.best_step = val_loss, state.step
                state.best_weights = {
                    k: v.detach().clone() for k, v in unwrap_model(net).state_dict().items()
                }
            val_loss_random = val_loss
            if done:
                val_loss, val_loss_random = _final_val_loss(cfg, net, data, state, amp_dtype)
            row = {
                "step": state.step, "seconds": round(state.seconds, 3), "tokens": state.tokens, "lr": lr,
                "train_loss": loss_sum.item() / max(loss_count, 1), "val_loss": val_loss,
                "val_loss_random": val_loss_random, "final": int(done),
            }  # fmt: skip
            state.history.append(row)
            if verbose:
                print(
                    f"step {state.step:6d}  {state.seconds:7.1f} s  lr {lr:.2e}  "
                    f"train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}"
                    + (f" (whole split; nanoGPT's estimate {val_loss_random:.4f})" if done else "")
                )
            if on_eval is not None:
                on_eval(state, row)
            loss_sum, loss_count, last_eval_at = torch.zeros((), device=device), 0, state.seconds
            _sync(device)
            t0, seconds0 = time.perf_counter(), state.seconds  # and starts again
    return state


def _final_val_loss(
    cfg: TrainConfig, net: nn.Module, data: CharData, state: TrainState, amp_dtype: torch.dtype | None
) -> tuple[float, float]:
    """The val loss of the final weights (the best evaluated ones with keep_best) over the whole val
    split (:func:`split_loss`); nanoGPT's estimate (``final_eval_batches`` random windows other than
    those that chose the weights) goes into the row as val_loss_random."""
    if cfg.keep_best and state.best_weights is not None:
        unwrap_model(net).load_state_dict(state.best_weights)
        if state.best_step != state.step:
            print(f"keeping the weights of step {state.best_step} (val loss {state.best_val:.4f})")
    batches = cfg.final_eval_batches
    random = estimate_loss(net, data.val, cfg.block_size, cfg.batch_size, batches, amp_dtype, seed=4321)
    return split_loss(net, data.val, cfg.block_size, cfg.batch_size, amp_dtype), random


def save_plot(history: Sequence[dict[str, float]], run_dir: Path) -> None:
    curves = {f"{split} loss": [row[f"{split}_loss"] for row in history] for split in ("train", "val")}
    fig = plot_curves(curves, title="cross-entropy per character", xlabel="evaluation", ylabel="loss")
    save_figure(fig, run_dir / "loss.png")


def model_info(cfg: TrainConfig, vocab: CharVocab, source: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What sample and export need to rebuild and feed the model."""
    return {
        "model": "gpt",
        "model_config": model_config(cfg, len(vocab)).to_dict(),
        "vocab": vocab.to_dict(),
        "dataset": source,
        "split": "first 90% train, last 10% validation",
        "metrics": metrics,
    }


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The trained model of a run folder (eval mode, on ``device``) and its model_info.json."""
    run_dir = Path(run_dir)
    if not (run_dir / "model_info.json").exists() or not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a run folder of `train`: no model_info.json or checkpoint.pt"
        )
    info = json.loads((run_dir / "model_info.json").read_text())
    model = GPT(GPTConfig(**info["model_config"]))
    load_checkpoint(run_dir / "checkpoint.pt", model=model, restore_rng=False)
    return model.to(device).eval(), info


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: Sequence[str] | None = None, callbacks: Sequence[EvalHook] = ()) -> dict[str, Any]:
    """Train per the flags; returns model_info (with the final metrics). ``callbacks(state, row)`` run
    after each evaluation and checkpoint (the tests stop a run from one)."""
    cfg = config_from_argv(argv)
    run_dir = run_dir_of(cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = get_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    data = load_char_data(cfg.max_chars, text_file=cfg.text_file)
    print(f"{data.source}: {len(data.train):,} train, {len(data.val):,} val characters, "
          f"{len(data.vocab)} distinct; on {describe_device(device)}")  # fmt: skip
    model, net = build_model(cfg, len(data.vocab), device)
    optimizer = make_optimizer(cfg, model, device)
    print(f"GPT {cfg.n_layer} layers x {cfg.n_embd} wide, context {cfg.block_size}: "
          f"{model.num_parameters() / 1e6:.2f}M parameters")  # fmt: skip
    checkpoint_path, state = run_dir / "checkpoint.pt", TrainState()
    if cfg.resume and checkpoint_path.exists():
        saved = load_checkpoint(checkpoint_path, model=model, optimizer=optimizer, map_location=device)
        state = TrainState(**saved["train_state"], best_weights=saved.get("best_weights"))
        print(f"resumed {checkpoint_path} at step {state.step} ({state.seconds:.1f} s of budget used)")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.json")
    _write_json(run_dir / "model_info.json", model_info(cfg, data.vocab, data.source, {}))
    logger = CSVLogger(run_dir / "metrics.csv", append=False)
    for row in state.history:  # rewrite what the checkpoint restored, so no row appears twice
        logger.log(row)

    def on_eval(state: TrainState, row: dict[str, float]) -> None:
        logger.log(row)
        extra = {
            "train_state": state.plain(),
            "config": config_to_dict(cfg),
            "best_weights": state.best_weights,
        }
        save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, epoch=state.step, **extra)
        for callback in callbacks:
            callback(state, row)

    state = train_loop(cfg, net, optimizer, data.to(device), state, on_eval=on_eval)
    save_plot(state.history, run_dir)
    last = state.history[-1] if state.history else {}
    metrics = {
        "val_loss": last.get("val_loss"), "val_loss_random": last.get("val_loss_random"),
        "val_loss_is": "mean cross-entropy (nats/char) over the whole val split, non-overlapping windows",
        "train_loss": last.get("train_loss"), "steps": state.step, "best_step": state.best_step,
        "seconds": state.seconds, "tokens": state.tokens,
        "device": describe_device(device),
    }  # fmt: skip
    info = model_info(cfg, data.vocab, data.source, metrics)
    _write_json(run_dir / "model_info.json", info)
    print(f"val loss {metrics['val_loss']:.4f} after {state.step} steps, {state.seconds:.1f} s; in {run_dir}")
    return info


if __name__ == "__main__":
    main()
