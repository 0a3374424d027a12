"""Score a run on its validation or test part: HR, NDCG, recall, precision, MAP at K, coverage (+ RMSE).

    python -m projects.recommendation_system evaluate \
        --run-dir runs/recommendation_system/movielens_small-ease
    python -m projects.recommendation_system evaluate --run-dir ... --split val

The test part is scored with the model's input = each user's whole training history and the rules of
:mod:`.data` (candidates: items seen in training minus the user's own); a biased MF run (mf, bmf) also
gets its RMSE in stars on the held-out ratings (predictions clipped to 0.5-5). The result is printed and
written to ``<run-dir>/<split>_metrics.json`` (export copies it into the release's model.json).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from dlkit.config import parse_config
from dlkit.device import get_device
from dlkit.project import EvalConfig, trained_run
from dlkit.runs import load_trained, write_json
from projects.recommendation_system.data import (
    evaluate_ranking,
    load_ratings,
    protocol_splits,
    ranking_task,
    rmse,
)
from projects.recommendation_system.models import BayesianMF, BiasedMF, RateAndLike, build_model

__all__ = ["main", "score_run"]


def score_run(
    run_dir: str, split: str = "test", device: str = "cpu", batch_size: int = 256
) -> dict[str, Any]:
    """The metrics of the run folder ``run_dir`` on ``split`` ("val" or "test")."""
    run = trained_run(run_dir)
    config = run.read_config()
    model, info = load_trained(run.path, build_model, get_device(device))
    data = load_ratings(config["dataset"], quick=config["quick"])
    splits = protocol_splits(data, config["split"], config.get("split_seed", 0))
    history, heldout = (splits.fit, splits.val) if split == "val" else (splits.train, splits.test)
    if split == "val" and info["model"] in ("popularity", "itemknn", "ease", "bmf", "hybrid"):
        print("note: this model was refitted on all of train, validation included: use --split test, or "
              "the val_metrics.json train wrote (its candidate's validation scores)")  # fmt: skip
    task = ranking_task(data, history, heldout, split)
    dev = next(iter(model.buffers()), torch.empty(0)).device
    t0 = time.perf_counter()
    users = iter(task.users.split(batch_size))  # the users of each batch, for models that read them
    if isinstance(model, (BiasedMF, BayesianMF)):  # predicted stars of every movie
        score = lambda x: model.scores(next(users).to(dev))  # noqa: E731
    elif isinstance(model, RateAndLike):  # its MF half has a row per user
        score = lambda x: model(x.to(dev), next(users).to(dev))  # noqa: E731
    else:
        score = lambda x: model(x.to(dev))  # noqa: E731
    metrics = evaluate_ranking(score, task, config["k"], batch_size)
    if isinstance(model, (BiasedMF, BayesianMF)):
        predict = lambda u, i: model.predict(u.to(dev), i.to(dev)).clamp(0.5, 5.0)  # noqa: E731
        metrics = {"rmse": rmse(predict, data, heldout), **metrics}
    return {
        **{f"{split}_{k}": v for k, v in metrics.items()},
        "k": config["k"], "users": len(task.users), "model": info["model"], "dataset": info["dataset"],
        "split": config["split"], "seconds": round(time.perf_counter() - t0, 2),
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(EvalConfig, argv)
    result = score_run(cfg.run_dir, cfg.split, cfg.device, cfg.batch_size)
    write_json(trained_run(cfg.run_dir) / f"{cfg.split}_metrics.json", result)
    k = result["k"]
    names = ", ".join(
        _metric_name(name.removeprefix(cfg.split + "_"), k) + f" {value:.4f}"
        for name, value in result.items()
        if name.startswith(cfg.split + "_")
    )
    print(
        f"{result['model']} on {result['dataset']}, {cfg.split} "
        f"({result['split']} split, {result['users']} users): {names}"
    )
    return 0


def _metric_name(name: str, k: int) -> str:
    """ "rmse" -> "RMSE", "coverage" as it is, "ndcg" -> "ndcg@10"."""
    return "RMSE" if name == "rmse" else name if name == "coverage" else f"{name}@{k}"
