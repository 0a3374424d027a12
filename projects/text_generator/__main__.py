"""``python -m projects.text_generator COMMAND [flags]``: train, sample, export.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.cli import run_subcommand

COMMANDS = {
    "train": "train the GPT for a budget of seconds (--preset cpu|gpu) and write a run folder",
    "sample": "generate text from a run folder or a release (prompt, temperature, top-k, seed)",
    "export": "export a trained run as a release (safetensors + JSON, ONNX checked against PyTorch)",
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("projects.text_generator", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
