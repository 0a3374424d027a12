"""Export a trained run as a release: everything serve and predict need, as tensors and JSON.

    python -m projects.recommendation_system export \
        --run-dir runs/recommendation_system/movielens_small-ranker

The release folder holds ``model.safetensors`` (the scorer's weights, e.g. EASE's item-item matrix or
the ranker's tables, plus each known user's ratings and the items' popularity: tensors only, no
pickle), ``model.json`` (the architecture, the catalogue's titles, years, genres and MovieLens ids,
the data, the run's validation and test metrics) and ``model.onnx``: the scorer, (B, I) stars ->
(B, I) scores, checked against PyTorch on real users' histories before anything is written.

Biased MF predicts stars for (user, item) pairs and cannot score a visitor it never saw: it is
evaluated (RMSE), not released; export a ranking model (ranker, ease, itemknn or popularity).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dlkit import project
from dlkit.errors import UserError
from dlkit.export import export_onnx_checked, save_release
from dlkit.runs import RunFolder, load_trained, read_json
from projects.recommendation_system.data import load_ratings
from projects.recommendation_system.models import build_model
from projects.recommendation_system.predict import ServingModel
from projects.recommendation_system.train import run_data

__all__ = ["main", "write_release"]


def write_release(cfg: project.ExportConfig, run: RunFolder, staging: Path) -> dict[str, Any]:
    scorer, info = load_trained(run.path, build_model)
    if info["model"] == "hybrid":
        raise UserError(
            "the hybrid's MF half has a row per known user and cannot score a visitor: export a ranking "
            "model instead (train --model ranker, ease, itemknn or popularity)"
        )
    if info["model"] in ("mf", "bmf"):
        raise UserError(
            "biased MF predicts stars and cannot score new users: export a ranking model instead "
            "(train --model ranker, ease, itemknn or popularity)"
        )
    config = run.read_config()
    data = load_ratings(config["dataset"], quick=config["quick"])
    catalogue, splits, train = run_data(data, config)
    model = ServingModel(scorer, train.num_users, len(train.items), train.num_items)
    model.user_indptr.copy_(train.indptr)
    model.user_items.copy_(train.items)
    model.user_ratings.copy_(train.ratings)
    model.popularity.copy_(train.item_counts())
    model.eval()
    users = torch.randperm(train.num_users, generator=torch.Generator().manual_seed(0))[: cfg.parity_examples]
    metrics = {
        split: read_json(run / f"{split}_metrics.json")
        for split in ("val", "test")
        if (run / f"{split}_metrics.json").exists()
    }
    metadata: dict[str, Any] = {
        "architecture": {"name": info["model"], "model": info["model"], "kwargs": info["kwargs"]},
        "dataset": data.source.split(" from ")[0],
        "split": config["split"],
        "metrics": metrics,
        "preprocessing": {
            "input": "(B, I) float32: the stars (0.5-5) each user gave each item, 0 where none; "
            "a visitor's liked movie counts as 5 stars",
            "output": "(B, I) scores, larger = recommended first; leave out rated items",
        },
        "sizes": {"users": train.num_users, "items": train.num_items, "ratings": len(train.items)},
        "items": {
            "titles": catalogue.titles,
            "years": catalogue.years,
            "genres": catalogue.genres,
            "movie_ids": catalogue.movie_ids,
        },
        "users": "MovieLens user ids 1..N: user id u is row u - 1",
    }
    if cfg.onnx:
        examples = train.matrix(users)
        metadata.update(
            export_onnx_checked(
                scorer,
                examples,
                staging,
                source=f"{len(users)} training users' ratings",
                input_name="stars",
                output_name="scores",
                atol=cfg.atol,
                rtol=cfg.rtol,
            )  # fmt: skip
        )
    save_release(model, {**metadata, "trained_from": run.path.name}, staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    return project.export_main(argv, project.ExportConfig, write_release)
