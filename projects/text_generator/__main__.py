"""``python -m projects.text_generator COMMAND [flags]``: train, evaluate, export, predict (or sample), serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.project import project_main

COMMANDS = {
    "train": "train the GPT for a budget of seconds (--preset cpu|gpu, --quick) and write a run folder",
    "evaluate": "loss and perplexity of a run on its validation split or a text file",
    "export": "export a trained run as a release (safetensors + JSON, ONNX checked against PyTorch)",
    "predict": "generate text from a release or a run folder (prompt, temperature, top-k, seed)",
    "serve": "serve a release over HTTP: a page and POST /generate, which streams the text",
    "sample": "=predict",
}


def main(argv: Sequence[str] | None = None) -> int:
    return project_main("projects.text_generator", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
