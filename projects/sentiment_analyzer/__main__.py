"""``python -m projects.sentiment_analyzer COMMAND [flags]``: train, evaluate, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.project import project_main

COMMANDS = {
    "train": "train nbsvm, baseline or minilm (validation split held out) and write a run folder",
    "evaluate": "accuracy, F1 and calibration (ECE, reliability diagram) of a run on --split val or test",
    "export": "turn a run into a release folder (safetensors + JSON, ONNX checked against PyTorch)",
    "predict": "the sentiment of texts, and the words that pushed it each way (n-gram models)",
    "serve": "serve a release over HTTP: POST /predict (JSON) and a page with a text box",
}


def main(argv: Sequence[str] | None = None) -> int:
    return project_main("projects.sentiment_analyzer", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
