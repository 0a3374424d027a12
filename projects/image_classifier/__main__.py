"""``python -m projects.image_classifier COMMAND [flags]``: train, evaluate, fast, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.cli import run_subcommand

COMMANDS = {
    "train": "train a model and write a run folder (checkpoints, metrics, plots, model_info.json)",
    "evaluate": "accuracy, per-class accuracy and confusion matrix of a run, with or without TTA",
    "fast": "the airbench-style fast path: data on the device, compiled, a CIFAR-10 run in seconds on a GPU",
    "export": "export a trained run (ONNX, torch.export)",
    "predict": "classify image files with a trained run",
    "serve": "serve a trained run over HTTP",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("projects.image_classifier", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
