"""``python -m projects.text_generator COMMAND [flags]``: train, sample, export.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "train": "train the GPT for a budget of seconds (--preset cpu|gpu) and write a run folder",
    "sample": "generate text from a run folder or a release (prompt, temperature, top-k, seed)",
    "export": "export a trained run as a release (safetensors + JSON, ONNX checked against PyTorch)",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().splitlines()[0])
        for name, text in COMMANDS.items():
            print(f"  {name:<7s} {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"projects.text_generator.{argv[0]}")
    result = module.main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
