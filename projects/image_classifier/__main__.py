"""``python -m projects.image_classifier COMMAND [flags]``: train, evaluate, fast, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "train": "train a model and write a run folder (checkpoints, metrics, plots, model_info.json)",
    "evaluate": "accuracy, per-class accuracy and confusion matrix of a run, with or without TTA",
    "fast": "the airbench-style fast path: data on the device, compiled, a CIFAR-10 run in seconds on a GPU",
    "export": "export a trained run (ONNX, torch.export)",
    "predict": "classify image files with a trained run",
    "serve": "serve a trained run over HTTP",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().splitlines()[0])
        for name, text in COMMANDS.items():
            print(f"  {name:<9s} {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"projects.image_classifier.{argv[0]}")
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
