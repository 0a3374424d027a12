"""``python -m projects.image_classifier COMMAND [flags]``: train, evaluate, fast, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.project import project_main

COMMANDS = {
    "train": "train a model and write a run folder (checkpoints, metrics, plots, model_info.json)",
    "evaluate": "accuracy, per-class accuracy, confusion matrix and calibration of a run, on val or test",
    "fast": "the airbench-style fast path: data on the device, compiled, a CIFAR-10 run in seconds on a GPU",
    "export": "release a trained run: safetensors + model.json, ONNX and torch.export checked on real images",
    "predict": "classify image files with a release",
    "serve": "serve a release over HTTP: a web page and a JSON API",
}


def main(argv: Sequence[str] | None = None) -> int:
    return project_main("projects.image_classifier", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
