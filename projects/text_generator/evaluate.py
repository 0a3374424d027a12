"""Loss and perplexity of a trained run: on its own validation split, or on a text file.

    python -m projects.text_generator evaluate --run-dir runs/text_generator/cpu
    python -m projects.text_generator evaluate --run-dir runs/text_generator/cpu --text-file sonnets.txt

The loss is the mean cross-entropy in nats per character over the text cut into non-overlapping
windows of the context length (float32; the few characters that do not fill a last window are left
out); perplexity is e^loss and bits per character loss / ln 2. Tiny shakespeare has no test split in
nanoGPT's benchmark (90% train, 10% validation), so ``--split`` is ``val`` only; ``--text-file`` scores
any other text whose characters the model knows. The validation result is also written to the run
folder as evaluation.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlkit.config import flag, parse_config
from dlkit.device import get_device
from dlkit.project import EvalConfig as ProjectEvalConfig
from dlkit.project import trained_run
from dlkit.runs import write_json
from dlkit.text import CharVocab
from projects.text_generator.data import encode_text, loss_report, read_text_file, split_loss
from projects.text_generator.export import run_data
from projects.text_generator.train import load_gpt

__all__ = ["EvalConfig", "evaluate_run", "main"]


@dataclass
class EvalConfig(ProjectEvalConfig):
    """Loss (nats/char) and perplexity of a trained run on its validation split or on a text file."""

    split: str = flag(
        "val", help="the run's validation split (the benchmark has no test split)", choices=("val",)
    )
    text_file: str = flag("", help="score this UTF-8 text file instead of the validation split")


def evaluate_run(cfg: EvalConfig) -> dict[str, Any]:
    run = trained_run(cfg.run_dir)
    model, info = load_gpt(str(run.path), get_device(cfg.device))
    device = next(model.parameters()).device
    block_size = model.cfg.block_size
    if cfg.text_file:
        ids = encode_text(
            CharVocab.from_dict(info["vocab"]), read_text_file(cfg.text_file), f"--text-file {cfg.text_file}"
        )
        what = f"the text file {cfg.text_file}"
    else:
        data = run_data(info)
        ids, what = data.val, f"the validation split of {data.name}"
    loss = split_loss(model, ids.to(device), block_size, cfg.batch_size)
    windows = (len(ids) - 1) // block_size
    return {**loss_report(loss), "scored": what, "characters": windows * block_size, "windows": windows}


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(EvalConfig, argv)
    result = evaluate_run(cfg)
    print(
        f"{result['scored']}: loss {result['loss']:.4f} nats/char, perplexity {result['perplexity']:.3f}, "
        f"{result['bits_per_char']:.3f} bits/char over {result['characters']:,} characters "
        f"({result['windows']:,} windows)"
    )
    if not cfg.text_file:
        write_json(trained_run(cfg.run_dir) / "evaluation.json", result)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
