"""``python -m projects.recommendation_system COMMAND [flags]``: train, evaluate, export, predict, serve.

Each command is a module of this package with a ``main(argv)``; ``COMMAND --help`` lists its flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dlkit.project import project_main

COMMANDS = {
    "train": "fit a recommender (--model popularity|itemknn|ease|mf|bmf|hybrid|ranker), write a run folder",
    "evaluate": "HR, NDCG, recall, precision, MAP at K and coverage (RMSE for mf, bmf) on val or test",
    "export": "export a run as a release (safetensors + JSON with titles, ONNX checked against PyTorch)",
    "predict": "top-k for a user, for liked titles, movies like a movie, or search titles",
    "serve": "serve a release over HTTP: a page and a JSON API (users, similar movies, cold start, search)",
    "recommend": "=predict",
}


def main(argv: Sequence[str] | None = None) -> int:
    return project_main("projects.recommendation_system", COMMANDS, argv, __doc__.strip().splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
