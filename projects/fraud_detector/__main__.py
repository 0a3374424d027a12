"""``python -m projects.fraud_detector COMMAND [flags]``: train, evaluate, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.project import project_main

COMMANDS = {
    "train": "train a detector (autoencoder, deep_svdd, mlp, logistic) and write a run folder",
    "evaluate": "AUPRC, ROC-AUC, alert budgets and the cost threshold on the test rows, with baselines",
    "export": "export a trained run as a release (safetensors + JSON, ONNX checked against PyTorch)",
    "predict": "score a CSV or Parquet file in chunks and write scores and flags",
    "serve": "serve a release over HTTP: POST /score and a page that scores an uploaded CSV",
}


def main(argv: Sequence[str] | None = None) -> int:
    return project_main("projects.fraud_detector", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
