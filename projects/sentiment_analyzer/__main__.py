"""``python -m projects.sentiment_analyzer COMMAND [flags]``: train, evaluate, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "train": "train nbsvm, baseline or minilm and write a run folder (weights, metrics, plots)",
    "evaluate": "accuracy, F1, calibration (ECE, reliability diagram) of a run on the test split",
    "export": "turn a run into a release folder (safetensors + JSON, ONNX checked against PyTorch)",
    "predict": "the sentiment of texts given as arguments, in a file (one per line) or on stdin",
    "serve": "serve a release over HTTP: POST /predict (JSON) and a page with a text box",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().splitlines()[0])
        for name, text in COMMANDS.items():
            print(f"  {name:<9s} {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"projects.sentiment_analyzer.{argv[0]}")
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
