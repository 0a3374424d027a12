"""Generate text with a trained GPT, from a release (``export``) or a run folder (``train``).

    python -m projects.text_generator predict --release runs/text_generator/cpu/release --prompt "ROMEO:"
    python -m projects.text_generator sample --run-dir runs/text_generator/cpu \\
        --num-chars 1000 --temperature 0.8 --top-k 40 --seed 1          # `sample` is the same command

An empty prompt starts from a newline. The model knows only the characters of its training text: a
prompt with any other character is refused with a message naming them. The same seed, prompt and
settings give the same text on the same device (the server's stream included).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dlkit.config import flag, parse_config
from dlkit.device import get_device
from dlkit.errors import UserError
from dlkit.export import ReleaseError
from dlkit.project import PredictConfig as ProjectPredictConfig
from dlkit.project import ReleasePredictor, trained_run
from dlkit.text import CharVocab
from projects.text_generator.model import GPT, GPTConfig

__all__ = ["PredictConfig", "SampleError", "TextGenerator", "check_settings", "generate_ids", "main"]


class SampleError(UserError, ValueError):
    """Bad input for sampling (prompt, temperature, top-k, length), with a message for the user."""


@dataclass
class PredictConfig(ProjectPredictConfig):
    """Generate text from a trained character-level GPT (a release, or a run folder)."""

    run_dir: str = flag("", help="or a run folder written by `train` (instead of --release)")
    prompt: str = flag("", help="the text to continue (empty: start from a newline)")
    num_chars: int = flag(500, help="characters to generate", min=0, max=1_000_000)
    temperature: float = 0.8
    top_k: int | None = flag(200, help="sample among the k likeliest characters (none: all)", min=1)
    seed: int = 0
    num_samples: int = flag(1, help="continuations to generate (--batch-size at a time)", min=1, max=10_000)


def check_settings(num_chars: int, temperature: float, top_k: int | None) -> None:
    """A SampleError for a length < 0, a temperature that is not a finite number > 0, or a top-k < 1."""
    if isinstance(num_chars, bool) or not isinstance(num_chars, int) or num_chars < 0:
        raise SampleError(f"the number of characters must be a whole number >= 0, not {num_chars!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (temperature > 0 and math.isfinite(temperature))
    ):
        raise SampleError(f"the temperature must be a number > 0 (e.g. 0.8), not {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise SampleError(f"top-k must be a whole number >= 1 (or none for no limit), not {top_k!r}")


@torch.no_grad()
def generate_ids(
    model: GPT,
    idx: torch.Tensor,
    num_chars: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``num_chars`` sampled ids (B,), one step at a time, continuing ``idx`` (B, T); each step
    reads at most block_size characters of context."""
    check_settings(num_chars, temperature, top_k)
    for _ in range(num_chars):
        context = idx[:, -model.cfg.block_size :]  # (B, <= block_size)
        logits = model(context)[:, -1, :].float() / temperature  # (B, V): the next character's scores
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, -float("inf"))
        next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
        yield next_id[:, 0]


class TextGenerator(ReleasePredictor):
    """A trained GPT and its vocabulary, loaded once: ``sample`` (whole texts) and ``stream`` (one
    character at a time, for the server)."""

    @staticmethod
    def build_model(metadata: dict[str, Any]) -> GPT:
        return GPT(GPTConfig(**metadata["architecture"]["config"]))

    @classmethod
    def load(cls, release: str = "", run_dir: str = "", device: str | torch.device = "auto") -> TextGenerator:
        """From a release folder or (``run_dir``) a run folder; exactly one of the two."""
        if bool(release) == bool(run_dir):
            raise SampleError("give either --release (a folder written by export) or --run-dir (by train)")
        if run_dir:
            from projects.text_generator.train import load_gpt

            resolved = get_device(str(device))
            model, info = load_gpt(str(trained_run(run_dir).path), resolved)
            metadata = {**info, "architecture": {"name": "gpt", "config": info["model_config"]}}
            return cls(model, metadata, resolved)
        try:
            return cls.from_release(release, device)  # type: ignore[return-value]
        except ReleaseError as e:
            raise UserError(str(e)) from e

    def __init__(self, model: GPT, metadata: dict[str, Any], device: torch.device) -> None:
        super().__init__(model.eval(), metadata, device)
        self.vocab = CharVocab.from_dict(metadata["vocab"])
        self.block_size = int(metadata["architecture"]["config"]["block_size"])

    def describe(self) -> dict[str, Any]:
        """What a client needs: the model, its data and metrics, the characters it knows, its context."""
        return {**super().describe(), "characters": self.vocab.chars, "context_length": self.block_size}

    def encode_prompt(self, prompt: str) -> list[int]:
        """The prompt's ids; an empty prompt is a newline; unknown characters raise SampleError."""
        if not isinstance(prompt, str):
            raise SampleError(f"the prompt must be text, not {type(prompt).__name__}")
        missing = self.vocab.unknown(prompt)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise SampleError(
                f"the prompt has {len(missing)} character(s) the model never saw in training: {shown}. "
                f"It knows these {len(self.vocab)}: {self.vocab.chars!r}"
            )
        return self.vocab.encode(prompt or "\n")

    def _start(self, prompt: str, rows: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
        ids = torch.tensor([self.encode_prompt(prompt)] * rows, device=self.device)  # (B, T)
        return ids, torch.Generator(device=self.device).manual_seed(seed)

    def stream(
        self, prompt: str = "", num_chars: int = 500, temperature: float = 0.8, top_k: int | None = 200,
        seed: int = 0,
    ) -> Iterator[str]:  # fmt: skip
        """The continuation of ``prompt``, one character at a time (the prompt itself is not repeated).
        Settings and prompt are checked before the first character: errors come before any text."""
        check_settings(num_chars, temperature, top_k)
        ids, generator = self._start(prompt, 1, seed)
        return (
            self.vocab.chars[int(i)]
            for i in generate_ids(self.model, ids, num_chars, temperature, top_k, generator)
        )

    def sample(
        self, prompt: str = "", num_chars: int = 500, temperature: float = 0.8, top_k: int | None = 200,
        seed: int = 0, num_samples: int = 1,
    ) -> list[str]:  # fmt: skip
        """``num_samples`` texts, each the prompt and its continuation, generated together. One sample
        equals what :meth:`stream` yields after the prompt, with the same seed."""
        check_settings(num_chars, temperature, top_k)
        ids, generator = self._start(prompt, num_samples, seed)
        steps = list(generate_ids(self.model, ids, num_chars, temperature, top_k, generator))
        out = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(num_samples)]  # (B, N)
        return [prompt + self.vocab.decode(row) for row in out]


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(PredictConfig, argv)
    check_settings(cfg.num_chars, cfg.temperature, cfg.top_k)
    generator = TextGenerator.load(cfg.release, cfg.run_dir, cfg.device)
    texts: list[str] = []
    for start in range(0, cfg.num_samples, cfg.batch_size):  # each batch has a seed of its own
        rows = min(cfg.batch_size, cfg.num_samples - start)
        seed = cfg.seed + start // cfg.batch_size
        texts += generator.sample(cfg.prompt, cfg.num_chars, cfg.temperature, cfg.top_k, seed, rows)
    for i, text in enumerate(texts):
        if cfg.json:
            settings = {"temperature": cfg.temperature, "top_k": cfg.top_k, "seed": cfg.seed}
            print(json.dumps({"sample": i + 1, "prompt": cfg.prompt, "text": text, **settings}))
        else:
            if len(texts) > 1:
                print(f"--- sample {i + 1}")
            print(text)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
