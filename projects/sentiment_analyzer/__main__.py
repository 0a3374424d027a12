"""``python -m projects.sentiment_analyzer COMMAND [flags]``: train, evaluate, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.cli import run_subcommand

COMMANDS = {
    "train": "train nbsvm, baseline or minilm and write a run folder (weights, metrics, plots)",
    "evaluate": "accuracy, F1, calibration (ECE, reliability diagram) of a run on the test split",
    "export": "turn a run into a release folder (safetensors + JSON, ONNX checked against PyTorch)",
    "predict": "the sentiment of texts given as arguments, in a file (one per line) or on stdin",
    "serve": "serve a release over HTTP: POST /predict (JSON) and a page with a text box",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("projects.sentiment_analyzer", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
