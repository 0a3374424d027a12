"""Generate text with a trained GPT, from a run folder (``train``) or a release folder (``export``).

    python -m projects.text_generator sample --run-dir runs/text_generator/cpu --prompt "ROMEO:"
    python -m projects.text_generator sample --release runs/text_generator/gpu/release \\
        --num-chars 1000 --temperature 0.8 --top-k 40 --seed 1

An empty prompt starts from a newline. The model knows only the characters of its training text: a
prompt with any other character is refused with a message naming them. The same seed, prompt and
settings give the same text on the same device.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlkit.config import parse_config
from dlkit.device import get_device
from dlkit.export import ReleaseError, load_release
from dlkit.text import CharVocab
from projects.text_generator.model import GPT, GPTConfig

__all__ = [
    "SampleConfig",
    "SampleError",
    "check_settings",
    "encode_prompt",
    "generate",
    "load_generator",
    "main",
]


class SampleError(ValueError):
    """Bad input for sampling (prompt, temperature, top-k, length), with a message for the user."""


@dataclass
class SampleConfig:
    """Generate text from a trained character-level GPT."""

    run_dir: str = field(default="", metadata={"help": "a run folder written by train"})
    release: str = field(default="", metadata={"help": "or a release folder written by export"})
    prompt: str = field(default="", metadata={"help": "the text to continue (empty: start from a newline)"})
    num_chars: int = field(default=500, metadata={"help": "how many characters to generate"})
    temperature: float = field(default=0.8, metadata={"help": "> 0; lower is more conservative"})
    top_k: int | None = field(default=200, metadata={"help": "sample among the k likeliest (None: all)"})
    seed: int = 0
    num_samples: int = 1
    device: str = "cpu"


def load_generator(
    run_dir: str | Path = "", release: str | Path = "", device: str | torch.device = "cpu"
) -> tuple[GPT, CharVocab, dict[str, Any]]:
    """(model in eval mode, its vocabulary, its metadata) from a run folder or a release folder."""
    if bool(run_dir) == bool(release):
        raise SampleError(
            "give either --run-dir (a folder written by train) or --release (written by export)"
        )
    if release:
        model, meta = load_release(release, lambda m: GPT(GPTConfig(**m["architecture"]["config"])), device)
        return model, CharVocab.from_dict(meta["vocab"]), meta
    from projects.text_generator.train import load_trained

    model, info = load_trained(run_dir, device)
    return model, CharVocab.from_dict(info["vocab"]), info


def check_settings(num_chars: int, temperature: float, top_k: int | None) -> None:
    if num_chars < 0:
        raise SampleError(f"the number of characters must be >= 0, not {num_chars}")
    if not temperature > 0 or temperature == float("inf"):
        raise SampleError(f"the temperature must be a number > 0 (e.g. 0.8), not {temperature}")
    if top_k is not None and top_k < 1:
        raise SampleError(f"top-k must be >= 1 (or None for no limit), not {top_k}")


def encode_prompt(vocab: CharVocab, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt is a newline; unknown characters raise SampleError."""
    missing = vocab.unknown(prompt)
    if missing:
        raise SampleError(
            f"the prompt has {len(missing)} character(s) the model never saw in training: "
            f"{', '.join(repr(c) for c in missing)}. It knows these {len(vocab)}: {vocab.chars!r}"
        )
    return vocab.encode(prompt or "\n")


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    num_chars: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Append ``num_chars`` sampled ids to ``idx`` (B, T), reading at most block_size of context."""
    check_settings(num_chars, temperature, top_k)
    for _ in range(num_chars):
        context = idx[:, -model.cfg.block_size :]  # (B, <= block_size)
        logits = model(context)[:, -1, :].float() / temperature  # (B, V): the next character's scores
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, -float("inf"))
        next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
    return idx


def sample_text(
    model: GPT, vocab: CharVocab, prompt: str = "", num_chars: int = 500, temperature: float = 0.8,
    top_k: int | None = 200, seed: int = 0, num_samples: int = 1,
) -> list[str]:  # fmt: skip
    """``num_samples`` continuations of ``prompt`` (each starting with the prompt)."""
    check_settings(num_chars, temperature, top_k)
    device = next(model.parameters()).device
    ids = torch.tensor([encode_prompt(vocab, prompt)] * num_samples, device=device)  # (B, T)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = generate(model.eval(), ids, num_chars, temperature, top_k, generator)
    start = 0 if prompt else 1  # the newline an empty prompt starts from is not part of the text
    return [vocab.decode(row[start:].tolist()) for row in out]


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(SampleConfig, argv)
    try:
        check_settings(cfg.num_chars, cfg.temperature, cfg.top_k)
        model, vocab, _ = load_generator(cfg.run_dir, cfg.release, get_device(cfg.device))
        texts = sample_text(
            model, vocab, cfg.prompt, cfg.num_chars, cfg.temperature, cfg.top_k, cfg.seed, cfg.num_samples
        )
    except (SampleError, ReleaseError, FileNotFoundError) as e:
        print(f"sample: error: {e}", file=sys.stderr)
        return 2
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
