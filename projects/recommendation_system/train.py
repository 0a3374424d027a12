"""Fit a recommender on the protocol's training part and leave a run folder.

    python -m projects.recommendation_system train --model ranker           # the PyTorch ranking model
    python -m projects.recommendation_system train --model ease             # lambda chosen on validation
    python -m projects.recommendation_system train --model mf               # biased MF, for RMSE
    python -m projects.recommendation_system train --model bmf              # the same, Bayesian (Gibbs)
    python -m projects.recommendation_system train --model itemknn --split time
    python -m projects.recommendation_system train --quick                  # seconds, synthetic data, offline
    torchrun --nproc_per_node 2 -m projects.recommendation_system train --model ranker --quick   # DDP

Model selection never sees the test part (see :mod:`.data`): the baselines' hyperparameter (EASE's
lambda, item-kNN's k) is the one with the best validation NDCG, then the model is fitted again on the
whole training part; the PyTorch models train on the training part minus validation with
``dlkit.train.train_loop``, an evaluation on the validation users every epoch, and keep-best; the
Gibbs sampler of ``bmf`` runs on the training part minus validation (the validation RMSE of its
posterior mean, every 10 sweeps), then again on the whole training part for the model. The run
folder holds config.json, metrics.csv (one row per candidate or evaluation), checkpoint.pt,
model_info.json and val_metrics.json; ``evaluate --split test`` scores it once on the test part.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.config import config_to_dict, flag
from dlkit.data import RatingsData
from dlkit.errors import UserError
from dlkit.plots import plot_bars, plot_curves
from dlkit.progress import progress
from dlkit.project import TrainConfig as ProjectTrainConfig
from dlkit.project import parse_train_config, start_training
from dlkit.runs import RunFolder, write_json
from dlkit.train import (
    Budget,
    Evaluation,
    Selection,
    TensorBatches,
    cleanup_distributed,
    get_rank,
    get_world_size,
    is_main_process,
    train_loop,
)
from projects.recommendation_system.data import (
    DATASETS,
    Catalogue,
    Histories,
    ProtocolSplits,
    evaluate_ranking,
    histories,
    load_ratings,
    protocol_splits,
    ranking_task,
    rmse,
)
from projects.recommendation_system.models import (
    EASE,
    MODELS,
    BayesianMF,
    BiasedMF,
    GibbsChain,
    ItemKNN,
    Popularity,
    Ranker,
    RankerBatches,
    RateAndLike,
    fit_ease,
    fit_item_knn,
    mf_loss,
    ranker_loss,
)

__all__ = ["QUICK", "TrainConfig", "main", "run_data", "run_of"]

PROJECT = "recommendation_system"


@dataclass
class TrainConfig(ProjectTrainConfig):
    """Train a recommender on MovieLens; every field is a flag (--model, --dataset, --lambdas, ...)."""

    model: str = flag("ranker", help="which recommender", choices=MODELS)
    dataset: str = flag("movielens_small", help="MovieLens set (quick mode: synthetic)", choices=DATASETS)
    split: str = flag("random", help="random: 10%% of ratings held out; time: each user's latest 10%%",
                      choices=("random", "time"))  # fmt: skip
    split_seed: int = flag(0, help="seed of the random split (the issue's protocol: 0)", min=0)
    k: int = flag(10, help="list length the metrics score (HR@K, NDCG@K, ...)", min=1, max=1000)
    # Baselines: each candidate is fitted on train minus validation, the best refitted on all of train.
    lambdas: tuple[float, ...] = flag((100.0, 300.0, 1000.0), help="EASE's L2 weights tried on validation")
    neighbours: tuple[int, ...] = flag((50,), help="item-kNN's k (neighbours kept per item) tried")
    # The PyTorch models (mf, ranker).
    dim: int = flag(64, help="embedding width", min=1)
    l2: float = flag(0.0, help="L2 weight on the rows a batch touches", min=0)
    bias_l2: float = flag(-1.0, help="mf: L2 weight on the biases (-1: the same as --l2)", min=-1)
    lr_decay: float = flag(1.0, help="mf: the learning rate is multiplied by this after every epoch",
                           above=0, max=1)  # fmt: skip
    neighbourhood: int = flag(200, help="ranker: items each rated item votes for (its most co-rated)", min=1)
    start: str = flag(
        "cosine",
        help="ranker: cosine neighbours, W = 0; or ease: EASE's largest weights",
        choices=("cosine", "ease"),
    )
    start_lambda: float = flag(
        300.0, help="ranker --start ease: EASE's L2 weight (chosen by EASE's validation)", above=0
    )
    dropout: float = flag(
        0.0, help="ranker: share of a user's ratings hidden from the input", min=0, max=0.95
    )
    negatives: int = flag(2048, help="ranker: unrated items sampled on the device per step (0: all)", min=0)
    sweeps: int = flag(300, help="bmf: Gibbs sweeps (on train minus validation, then on train)", min=1)
    burn_in: int = flag(10, help="bmf: the first sweeps, left out of the posterior mean", min=0)
    like_weights: tuple[float, ...] = flag(
        (0.25, 0.5, 1.0), help="hybrid: weights of log P(liked) tried on validation (after EASE's lambda)"
    )
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = flag(64, help="users (ranker) or ratings (mf) per step, all processes together", min=1)
    num_epochs: float = flag(30.0, help="passes over the training users (ranker) or ratings (mf)", above=0)
    time_budget: float = flag(0.0, help="also stop after this many seconds of training (0: no limit)", min=0)
    patience: int = flag(0, help="stop after this many evaluations without a better one (0: never)", min=0)


QUICK: dict[str, Any] = {"num_epochs": 6.0, "lambdas": (10.0, 30.0), "neighbours": (20,), "dim": 16,
                         "sweeps": 30}  # fmt: skip

RECIPES: dict[str, dict[str, Any]] = {
    # Chosen on the validation split of movielens_small (README.md): never on test.
    "mf": {
        "dim": 64,
        "l2": 0.1,
        "bias_l2": 0.01,
        "lr": 5e-3,
        "lr_decay": 0.7,
        "batch_size": 256,
        "num_epochs": 12.0,
    },
    "bmf": {"dim": 10, "sweeps": 300, "burn_in": 10},
    "hybrid": {"dim": 10, "sweeps": 300, "burn_in": 10},  # its MF half is bmf's recipe
    "ranker": {},
}


def run_of(cfg: TrainConfig) -> RunFolder:
    """runs/recommendation_system/<dataset>-<model>[-time][-quick] unless --run-name says otherwise."""
    name = f"{'synthetic' if cfg.quick else cfg.dataset}-{cfg.model}"
    name += "-time" if cfg.split == "time" else ""
    return RunFolder.of(PROJECT, cfg.run_name or name, cfg.runs_dir)


def parse(argv: Sequence[str] | None) -> TrainConfig:
    """Dataclass defaults < the model's recipe < --quick's < the flags given."""

    def defaults(given: dict[str, Any]) -> dict[str, Any]:
        return dict(RECIPES.get(given.get("model") or "ranker", {}))

    return parse_train_config(TrainConfig, argv, run_of, quick=QUICK, defaults=defaults)


def run_data(data: RatingsData, config: dict[str, Any]) -> tuple[Catalogue, ProtocolSplits, Histories]:
    """The catalogue, the splits and the training histories of a run (from its config.json)."""
    splits = protocol_splits(data, config["split"], config.get("split_seed", 0))
    return Catalogue.of(data), splits, histories(data, splits.train)


# --- Baselines: closed form, hyperparameter on validation ----------------------------------------


def fit_baseline(
    cfg: TrainConfig, data: RatingsData, splits: ProtocolSplits, run: RunFolder
) -> tuple[nn.Module, dict[str, Any]]:
    """Popularity, or the item-kNN / EASE candidate with the best validation NDCG refitted on all of train."""
    val = ranking_task(data, splits.fit, splits.val, "val")
    train = histories(data, splits.train)
    if cfg.model == "popularity":
        model = Popularity(data.num_items)
        model.counts.copy_(val.history.item_counts())
        metrics = evaluate_ranking(model, val, cfg.k, prefix="val_")
        run.metrics_logger().log({"step": 0, **metrics})
        model.counts.copy_(train.item_counts())  # the same rule, on all of train
        return model, {"kwargs": {"num_items": data.num_items}, "chosen": {}, "val": metrics}
    values = cfg.lambdas if cfg.model == "ease" else cfg.neighbours
    candidates = _baseline_candidates(cfg.model, values, data.num_items, val.history.csr())
    value, _, metrics = _choose_on_validation(candidates, val, cfg.k, run.metrics_logger())
    name = "lambda" if cfg.model == "ease" else "k"
    print(f"chosen on validation: {name} = {value:g}; fitting it on the whole training part")
    model = _baseline(cfg.model, data.num_items, train.csr(), value)
    chosen = {"lambda" if cfg.model == "ease" else "neighbours": value}
    return model, {"kwargs": {"num_items": data.num_items}, "chosen": chosen, "val": metrics}


Candidate = tuple[str, float, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]


def _choose_on_validation(
    candidates: Sequence[Candidate], val: Any, k: int, log: Any, first_step: int = 0
) -> tuple[float, Any, dict[str, float]]:
    """Fit each ``(label, value, fit)`` candidate (``fit()`` returns a scorer of (B, I) stars), score
    it on the validation users, log a metrics.csv row (step, candidate, value, fit_seconds, metrics);
    return the best validation NDCG's (value, fitted scorer, metrics)."""
    best: tuple[float, Any, dict[str, float]] | None = None
    for step, (label, value, fit) in enumerate(candidates, start=first_step):
        t0 = time.perf_counter()
        scorer = fit()
        seconds = time.perf_counter() - t0
        metrics = evaluate_ranking(scorer, val, k, prefix="val_")
        log.log(
            {"step": step, "candidate": label, "value": value, "fit_seconds": round(seconds, 2), **metrics}
        )
        print(f"{label}: {_line(metrics)} (fit {seconds:.1f} s)")
        if best is None or metrics["val_ndcg"] > best[2]["val_ndcg"]:
            best = (value, scorer, metrics)
    assert best is not None, "no candidate to choose from"
    return best


def _baseline_candidates(name: str, values: Sequence[float], num_items: int, matrix: Any) -> list[Candidate]:
    """EASE's lambdas or item-kNN's k as candidates of :func:`_choose_on_validation`, fitted on ``matrix``."""
    hyper = "lambda" if name == "ease" else "k"
    return [
        (f"{name} {hyper} {value:g}", value, lambda v=value: _baseline(name, num_items, matrix, v))
        for value in values
    ]


def _baseline(name: str, num_items: int, matrix: Any, value: float) -> nn.Module:
    if name == "ease":
        model: nn.Module = EASE(num_items)
        model.weights.copy_(fit_ease(matrix, float(value)))
    else:
        model = ItemKNN(num_items)
        model.similarity.copy_(fit_item_knn(matrix, int(value)))
    return model


def _line(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in metrics.items())


# --- The PyTorch models: dlkit's loop, validation every epoch, keep-best -------------------------


def fit_mf(
    cfg: TrainConfig, data: RatingsData, splits: ProtocolSplits, device: torch.device, run: RunFolder
) -> tuple[nn.Module, dict[str, Any]]:
    """Biased MF on (user, item) -> stars of train minus validation; keep the best validation RMSE."""
    kwargs = {"num_users": data.num_users, "num_items": data.num_items, "dim": cfg.dim, "l2": cfg.l2,
              "bias_l2": cfg.l2 if cfg.bias_l2 < 0 else cfg.bias_l2}  # fmt: skip
    model = BiasedMF(**kwargs)
    fit = torch.from_numpy(splits.fit)
    model.mean.fill_(float(data.rating[fit].mean()))
    pairs = torch.stack([data.user[fit], data.item[fit]], 1)
    rank, world = get_rank(), get_world_size()
    batches = TensorBatches(
        pairs[rank::world], data.rating[fit][rank::world], cfg.batch_size // world, shuffle=True
    )
    val_task = ranking_task(data, splits.fit, splits.val, "val")

    def validate(module: nn.Module) -> dict[str, float]:
        mf = module.module if hasattr(module, "module") else module
        predict = lambda u, i: mf.predict(u.to(device), i.to(device)).clamp(0.5, 5.0)  # noqa: E731
        by_user = _mf_scores(mf, val_task, device)
        return {
            "val_rmse": rmse(predict, data, splits.val),
            **evaluate_ranking(by_user, val_task, cfg.k, prefix="val_"),
        }

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = train_loop(
        model, optimizer, batches, loss_fn=mf_loss, device=device,
        budget=Budget(epochs=cfg.num_epochs, seconds=cfg.time_budget or None),
        evaluation=Evaluation(validate), schedule=lambda step, used: cfg.lr_decay ** (step // len(batches)),
        selection=Selection("val_rmse", "min", keep_best=True, patience=cfg.patience or None), run=run,
        resume=cfg.resume, config=cfg,
    )  # fmt: skip
    return model, {"kwargs": kwargs, "chosen": {"step": state.best_step}, "seconds": state.seconds}


GIBBS_CHECKPOINT_EVERY = 25  # sweeps


def fit_bayesian_mf(
    cfg: TrainConfig, data: RatingsData, splits: ProtocolSplits, run: RunFolder
) -> tuple[nn.Module, dict[str, Any]]:
    """Bayesian biased MF (:class:`GibbsChain`): ``--sweeps`` on train minus validation, whose posterior
    mean gives the validation metrics (and the RMSE curve in metrics.csv, every 10 sweeps), then the
    same on all of train for the model, as the baselines are refitted. The chain is checkpointed every
    25 sweeps with the RNG states: ``--resume`` continues it exactly."""
    _check_gibbs_flags(cfg, data)
    state: dict[str, Any] = {"phase": 0, "sweep": 0, "rows": [], "val": {}, "seconds": 0.0}
    chain: GibbsChain | None = None
    if cfg.resume and run.checkpoint.exists():
        saved = load_checkpoint(run.checkpoint, restore_rng=False)
        if "gibbs" not in saved:
            raise UserError(f"{run.path} holds a finished bmf run: train without --resume to start over")
        chain = GibbsChain(data.num_users, data.num_items, cfg.dim)
        state = load_checkpoint(run.checkpoint, model=chain)["gibbs"]  # the RNG states too
        print(
            f"resuming the Gibbs chain: {('validation', 'final')[state['phase']]} run, sweep {state['sweep']}"
        )
    log = run.metrics_logger(state["rows"])
    for phase in range(state["phase"], 2):
        t0 = time.perf_counter() - state["seconds"]

        def after(chain: GibbsChain, done: int, phase: int = phase, t0: float = t0) -> None:
            if phase == 0 and int(chain.kept) > 0 and (done % 10 == 0 or done == cfg.sweeps):
                row = {
                    "step": done,
                    "val_rmse": _posterior_rmse(chain, data, splits.val),
                    "noise_sd": float(chain.alpha) ** -0.5,
                    "seconds": round(time.perf_counter() - t0, 2),
                }
                log.log(row)
                state["rows"].append(row)
                if done % 50 == 0 or done == cfg.sweeps:
                    print(
                        f"sweep {done}: validation RMSE {row['val_rmse']:.4f} "
                        f"(the mean of {int(chain.kept)} samples)"
                    )
            if done % GIBBS_CHECKPOINT_EVERY == 0 and done < cfg.sweeps:
                state.update(sweep=done, seconds=time.perf_counter() - t0)
                save_checkpoint(
                    run.checkpoint, model=chain, epoch=done, gibbs=state, config=config_to_dict(cfg)
                )

        index = splits.fit if phase == 0 else splits.train
        name = ("train minus validation", "all of train")[phase]
        # the first run's chain is new; the second's was made (and saved) when the first ended
        chain = _run_chain(cfg, data, index, name, chain, start=state["sweep"], after=after)
        seconds = time.perf_counter() - t0
        if phase == 0:
            fitted = chain.posterior_mean()
            state["val"] = _val_metrics(
                cfg, fitted, data, splits, ranking_task(data, splits.fit, splits.val, "val")
            )
            state["val_seconds"] = round(seconds, 2)
            print(f"validation: {_line(state['val'])} ({seconds:.0f} s); now the chain on all of train")
            train_stars = data.rating[torch.from_numpy(splits.train)]
            chain = GibbsChain(data.num_users, data.num_items, cfg.dim, mean=float(train_stars.mean()))
            state.update(phase=1, sweep=0, seconds=0.0)
            save_checkpoint(run.checkpoint, model=chain, epoch=0, gibbs=state, config=config_to_dict(cfg))
    assert chain is not None
    kwargs = {"num_users": data.num_users, "num_items": data.num_items}
    return chain.posterior_mean(), {
        "kwargs": kwargs,
        "chosen": {"dim": cfg.dim, "sweeps": cfg.sweeps, "burn_in": cfg.burn_in},
        "val": state["val"],
        "seconds": round(state.get("val_seconds", 0.0) + seconds, 2),
    }


def _posterior_rmse(chain: GibbsChain, data: RatingsData, index: Any) -> float:
    mean = chain.total / chain.kept
    return rmse(lambda u, i: mean[u, i].clamp(0.5, 5.0), data, index)


def fit_hybrid(
    cfg: TrainConfig, data: RatingsData, splits: ProtocolSplits, run: RunFolder
) -> tuple[nn.Module, dict[str, Any]]:
    """:class:`RateAndLike`: EASE (lambda of ``--lambdas`` by validation NDCG) and a Gibbs chain of
    Bayesian MF (bmf's flags) on train minus validation; the weight of ``--like-weights`` with the best
    validation NDCG; then both halves fitted again on all of train. No ``--resume``: the chains are
    short, so a stopped run starts over (as the baselines do)."""
    _check_gibbs_flags(cfg, data)
    val = ranking_task(data, splits.fit, splits.val, "val")
    log = run.metrics_logger()
    lambdas = _baseline_candidates("ease", cfg.lambdas, data.num_items, val.history.csr())
    lam, ease, _ = _choose_on_validation(lambdas, val, cfg.k, log)
    table = _run_chain(cfg, data, splits.fit, "train minus validation").posterior_mean().table
    sigma = rmse(lambda u, i: table[u, i].clamp(0.5, 5.0), data, splits.val)
    print(f"bayesian MF on train minus validation: validation RMSE {sigma:.4f}")

    def hybrid(weight: float) -> _UsersInOrder:
        model = RateAndLike(data.num_users, data.num_items, weight=weight, sigma=sigma)
        model.ease.copy_(ease.weights)
        model.table.copy_(table)
        return _UsersInOrder(model, val)

    weights = [(f"hybrid weight {w:g}", w, lambda w=w: hybrid(float(w))) for w in cfg.like_weights]
    weight, _, metrics = _choose_on_validation(weights, val, cfg.k, log, first_step=len(lambdas))
    print(f"chosen on validation: lambda = {lam:g}, weight = {weight:g}; fitting both on all of train")
    kwargs = {"num_users": data.num_users, "num_items": data.num_items, "weight": weight, "sigma": sigma}
    model = RateAndLike(**kwargs)
    t0 = time.perf_counter()
    model.ease.copy_(fit_ease(histories(data, splits.train).csr(), lam))
    model.table.copy_(_run_chain(cfg, data, splits.train, "all of train").posterior_mean().table)
    refit = round(time.perf_counter() - t0, 2)
    print(f"fitted on all of train in {refit:.0f} s")
    found = {"kwargs": kwargs, "chosen": {"lambda": lam, "weight": weight}, "val": metrics}
    return model, {**found, "refit_seconds": refit}


def _check_gibbs_flags(cfg: TrainConfig, data: RatingsData) -> None:
    if cfg.burn_in >= cfg.sweeps:
        raise UserError(
            f"--burn-in {cfg.burn_in} leaves no sweep to average: use fewer than --sweeps {cfg.sweeps}"
        )
    if data.num_users * data.num_items > 100_000_000:
        raise UserError(
            f"{cfg.model} keeps a users x items table ({data.num_users:,} x {data.num_items:,}): too "
            "large for this dataset; use --model mf"
        )


def _run_chain(
    cfg: TrainConfig,
    data: RatingsData,
    index: Any,
    name: str,
    chain: GibbsChain | None = None,
    start: int = 0,
    after: Callable[[GibbsChain, int], None] | None = None,
) -> GibbsChain:
    """Sweeps ``start`` .. ``--sweeps`` of a Gibbs chain (a new one unless given) on the ratings ``index``,
    averaging those past ``--burn-in``; ``after(chain, sweeps_done)`` runs after each sweep."""
    index = torch.from_numpy(np.asarray(index))
    users, items, stars = data.user[index], data.item[index], data.rating[index]
    if chain is None:
        chain = GibbsChain(data.num_users, data.num_items, cfg.dim, mean=float(stars.mean()))
    for sweep in progress(range(start, cfg.sweeps), desc=f"Gibbs sweeps, {name}"):
        chain.sweep(users, items, stars, keep=sweep >= cfg.burn_in)
        if after is not None:
            after(chain, sweep + 1)
    return chain


class _UsersInOrder:
    """A model that reads the users' ids, ``model(x, users)``, as the scorer of (B, I) stars that
    evaluate_ranking calls: batch after batch, the next ``len(x)`` of ``task.users``."""

    def __init__(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], task: Any) -> None:
        self.model, self.task, self.offset = model, task, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        users = self.task.users[self.offset : self.offset + len(x)]
        self.offset = (self.offset + len(x)) % len(self.task.users)
        return self.model(x, users)


def _mf_scores(model: BiasedMF | BayesianMF, task: Any, device: torch.device) -> _UsersInOrder:
    """MF as a ranking scorer of ``task``'s users: the predicted stars of every item."""
    return _UsersInOrder(lambda x, users: model.scores(users.to(device)), task)


def fit_ranker(
    cfg: TrainConfig, data: RatingsData, splits: ProtocolSplits, device: torch.device, run: RunFolder
) -> tuple[nn.Module, dict[str, Any]]:
    """The ranking model on train minus validation; keep the best validation NDCG@K."""
    fit = histories(data, splits.fit)
    val_task = ranking_task(data, splits.fit, splits.val, "val")
    kwargs = {"num_items": data.num_items, "num_neighbours": min(cfg.neighbourhood, data.num_items - 1)}
    model = Ranker(**kwargs)
    if cfg.start == "ease":  # EASE's closed form on the same rows, cut to each item's M largest weights
        model.init_from_weights(fit_ease(fit.csr(), cfg.start_lambda))
    else:
        model.init_from(fit.csr())

    def validate(module: nn.Module) -> dict[str, float]:
        return evaluate_ranking(lambda x: module(x.to(device)), val_task, cfg.k, prefix="val_")

    groups = [{"params": [model.weights], "weight_decay": cfg.weight_decay},
              {"params": [model.star_logits, model.bias], "weight_decay": 0.0}]  # fmt: skip
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    batches = RankerBatches(fit.to(device), cfg.batch_size, cfg.dropout, seed=cfg.seed)
    state = train_loop(
        model, optimizer, batches, loss_fn=ranker_loss(cfg.negatives), device=device,
        budget=Budget(epochs=cfg.num_epochs, seconds=cfg.time_budget or None),
        evaluation=Evaluation(validate),
        selection=Selection("val_ndcg", "max", keep_best=True, patience=cfg.patience or None), amp=False,
        run=run, resume=cfg.resume, config=cfg,
    )  # fmt: skip
    ratings_seen = state.epoch * len(fit.items) + 0.0
    return model, {"kwargs": kwargs, "chosen": {"step": state.best_step}, "seconds": state.seconds,
                   "ratings_per_second": ratings_seen / max(state.seconds, 1e-9)}  # fmt: skip


# --- The command ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train per the flags; return model_info (with the validation metrics)."""
    cfg = parse(argv)
    run = run_of(cfg)
    try:
        device = start_training(cfg, run)  # joins torchrun's process group when launched by it
        with contextlib.redirect_stdout(sys.stdout if is_main_process() else io.StringIO()):
            data = load_ratings(cfg.dataset, quick=cfg.quick)
            splits = protocol_splits(data, cfg.split, cfg.split_seed)
            print(f"{data.source}: {len(splits.fit):,} ratings to fit, {len(splits.val):,} validation, "
                  f"{len(splits.test):,} test ({cfg.split} split)")  # fmt: skip
            t0 = time.perf_counter()
            if cfg.model in ("popularity", "itemknn", "ease", "hybrid"):
                if get_world_size() > 1:
                    raise UserError(f"{cfg.model} is fitted in closed form: run it without torchrun")
                fit = fit_hybrid if cfg.model == "hybrid" else fit_baseline
                model, found = fit(cfg, data, splits, run)
            elif cfg.model == "mf":
                model, found = fit_mf(cfg, data, splits, device, run)
            elif cfg.model == "bmf":
                if get_world_size() > 1:
                    raise UserError("bmf is a Gibbs sampler on one process: run it without torchrun")
                if device.type != "cpu":
                    print(f"note: bmf samples on the CPU in float64 (--device {cfg.device} is not used)")
                model, found = fit_bayesian_mf(cfg, data, splits, run)
            else:
                model, found = fit_ranker(cfg, data, splits, device, run)
            seconds = time.perf_counter() - t0
        info = {
            "model": cfg.model, **found, "dataset": data.source.split(" from ")[0], "split": cfg.split,
            "fit_seconds_total": round(seconds, 2), "threads": torch.get_num_threads(),
        }  # fmt: skip
        if is_main_process():
            model.cpu().eval()
            if "val" in found:  # refitted on all of train (a baseline, bmf): the validation fit's scores
                save_checkpoint(run.checkpoint, model=model, epoch=0, config=config_to_dict(cfg))
                metrics = found["val"]
            else:  # trained on train minus validation: the weights kept
                metrics = _val_metrics(
                    cfg, model, data, splits, ranking_task(data, splits.fit, splits.val, "val")
                )
            info["val"] = metrics
            _plot_validation(cfg, run, metrics)
            run.write_info(info)
            write_json(run / "val_metrics.json", metrics)
            print("validation: " + _line(metrics))
            print(f"run folder: {run.path}")
        return info
    finally:
        cleanup_distributed()  # a no-op without torchrun


def _plot_validation(cfg: TrainConfig, run: RunFolder, metrics: dict[str, float]) -> None:
    """validation.png: the metric model selection used, per candidate (baselines), epoch or sweep; a
    bar chart of the validation metrics where there is no curve (popularity, a single candidate)."""
    rows = list(csv.DictReader(run.metrics_path.open())) if run.metrics_path.exists() else []
    metric = "val_rmse" if cfg.model in ("mf", "bmf") else "val_ndcg"
    values = [float(row[metric]) for row in rows if row.get(metric)]
    title = f"{cfg.model} on {'synthetic data' if cfg.quick else cfg.dataset}: validation"
    if len(values) < 2:
        bars = {name.removeprefix("val_"): value for name, value in metrics.items() if name != "val_rmse"}
        run.savefig(
            plot_bars(bars, title=title, ylabel=f"at K = {cfg.k}; coverage: share of movies"), "validation"
        )
        return
    if cfg.model in ("ease", "itemknn", "hybrid"):  # one bar per candidate
        bars = {row["candidate"]: value for row, value in zip(rows, values, strict=True)}
        run.savefig(plot_bars(bars, title=title, ylabel=metric), "validation")
        return
    steps = [float(row["step"]) for row in rows if row.get(metric)]
    xlabel = "sweep" if cfg.model == "bmf" else "step (one evaluation per epoch)"
    run.savefig(
        plot_curves({metric: values}, title=title, xlabel=xlabel, ylabel=metric, steps=steps), "validation"
    )


def _val_metrics(
    cfg: TrainConfig, model: nn.Module, data: RatingsData, splits: ProtocolSplits, val: Any
) -> dict[str, float]:
    if cfg.model in ("mf", "bmf"):
        assert isinstance(model, (BiasedMF, BayesianMF))
        return {
            "val_rmse": rmse(lambda u, i: model.predict(u, i).clamp(0.5, 5.0), data, splits.val),
            **evaluate_ranking(_mf_scores(model, val, torch.device("cpu")), val, cfg.k, prefix="val_"),
        }
    return evaluate_ranking(model, val, cfg.k, prefix="val_")


if __name__ == "__main__":
    main()
