"""Train a fraud detector and leave a run folder behind.

    python -m projects.fraud_detector train                        # autoencoder on the credit-card data
    python -m projects.fraud_detector train --model mlp            # supervised: MLP, class-weighted loss
    python -m projects.fraud_detector train --model mlp --loss focal
    python -m projects.fraud_detector train --model logistic       # supervised baseline
    python -m projects.fraud_detector train --model deep_svdd --data odds_cardio
    python -m projects.fraud_detector train --data file --data-file my.csv --label-column is_fraud \\
        --time-column timestamp
    python -m projects.fraud_detector train --quick                # SYNTHETIC transactions, seconds, offline
    torchrun --nproc_per_node 2 -m projects.fraud_detector train --quick   # two processes (DDP)

Unsupervised models (autoencoder, Deep SVDD) never see a label: they learn what the training rows look
like, frauds included, and a trimmed loss (the worst-fitted ``--trim`` of each batch left out) keeps the
rare odd rows from being learnt. Supervised models (MLP, logistic regression) learn from the labels with
a class-weighted cross-entropy (``--loss weighted``: frauds weigh negatives/positives times more) or
the focal loss. Training is ``dlkit.train.train_loop``: a budget of steps, epochs and seconds, an
evaluation on the validation rows every ``--eval-every`` steps, the best weights kept (validation loss
for unsupervised models: no label is used; validation AUPRC for supervised ones).

After training, the threshold is chosen on the validation rows: the one with the lowest cost
(``--cost-miss`` per missed fraud, ``--cost-review`` per flagged row) where they hold frauds, else the
score above which ``--alert-budget`` of the rows lie. The run folder holds config.json, metrics.csv,
checkpoint.pt, model_info.json (features, scaling statistics, threshold, validation metrics), loss.png
and val_scores.png.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dlkit import project
from dlkit.config import flag
from dlkit.errors import UserError
from dlkit.plots import plot_history
from dlkit.runs import RunFolder, load_trained
from dlkit.train import (
    Budget,
    Evaluation,
    LoopState,
    Selection,
    TensorBatches,
    cleanup_distributed,
    get_world_size,
    is_main_process,
    make_loader,
    setup_distributed,
    train_loop,
)
from projects.fraud_detector.data import (
    SOURCES,
    SPLITS,
    FraudData,
    Split,
    load_fraud_data,
    log_columns_of,
    split_rows,
)
from projects.fraud_detector.metrics import cost_threshold, score_report
from projects.fraud_detector.models import (
    MODELS,
    SUPERVISED,
    FraudScorer,
    Preprocess,
    build_net,
    focal_loss,
    score_kind,
    trimmed_mean,
)
from projects.fraud_detector.plots import plot_scores

__all__ = [
    "QUICK",
    "RECIPES",
    "TrainConfig",
    "build_scorer",
    "fit_detector",
    "load_run",
    "main",
    "make_config",
]
__all__ += ["parse", "run_of"]

PROJECT = "fraud_detector"
QUICK: dict[str, Any] = {"max_steps": 300, "eval_every": 100, "time_budget": 30.0}
# Where a model's defaults differ from the fields' (the unsupervised models'): a supervised model learns
# from every labelled fraud, so it trains longer; the unsupervised ones stop early, before the rare
# odd rows of their unlabelled training data are learnt too.
RECIPES: dict[str, dict[str, Any]] = {
    "mlp": {"max_steps": 3000},
    "logistic": {"max_steps": 3000},
}


@dataclass
class TrainConfig(project.TrainConfig):
    """Train a fraud detector: an autoencoder or Deep SVDD (no labels), an MLP or logistic regression."""

    data: str = flag(
        "creditcard",
        help="creditcard, file (--data-file), synthetic, or an ODDS/ADBench set",
        choices=SOURCES,
    )
    data_file: str = flag("", help="with --data file: a CSV or Parquet file, one transaction per row")
    label_column: str = flag("Class", help="the 0/1 label column of --data-file ('' : no labels)")
    time_column: str = flag("", help="--data-file's column that orders rows in time (not a feature)")
    drop: tuple[str, ...] = flag((), help="columns that are not features (ids, ...)")
    log_columns: tuple[str, ...] = flag(("auto",), help="columns to log-scale (auto: Amount where present)")
    model: str = flag("autoencoder", help="autoencoder, deep_svdd, mlp or logistic", choices=MODELS)
    split: str = flag(
        "auto", help="auto (time for transactions, else random), time, random, all", choices=SPLITS
    )
    test_fraction: float = flag(0.2, help="the last (or a random) share of the rows tested", above=0, max=0.9)
    val_fraction: float = flag(0.1, help="the share before the test rows validated (threshold, keep-best)")
    normal_only: bool = flag(False, help="unsupervised models: leave the labelled frauds out of training")
    squash: float = flag(
        10.0, help="scaled values beyond this grow logarithmically (c asinh(z/c); 0: off)", min=0
    )
    hidden: int = flag(64, help="width of the hidden layers", min=1)
    latent: int = flag(0, help="autoencoder/Deep SVDD code size (0: half the features, at least 2)", min=0)
    dropout: float = 0.1
    trim: float = flag(
        0.2, help="unsupervised: share of each batch's worst-fitted rows left out", min=0, max=0.5
    )
    loss: str = flag(
        "weighted",
        help="supervised: weighted (class-weighted BCE), focal, or plain BCE",
        choices=("weighted", "focal", "plain"),
    )
    focal_gamma: float = flag(2.0, help="the focal loss's gamma", min=0)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_steps: int = flag(500, help="optimizer steps at most (supervised models' default: 3000)", min=1)
    max_epochs: float = flag(100.0, help="passes over the training rows at most", above=0)
    time_budget: float = flag(100.0, help="seconds of training at most (0: no limit)")
    eval_every: int = flag(250, help="evaluate on the validation rows every N steps", min=1)
    cost_miss: float = flag(100.0, help="the cost of a missed fraud (for the threshold)", above=0)
    cost_review: float = flag(1.0, help="the cost of reviewing one flagged transaction", above=0)
    alert_budget: float = flag(
        0.01, help="without validation frauds: flag this share of rows", above=0, max=1
    )


def run_of(cfg: TrainConfig) -> RunFolder:
    """runs/fraud_detector/<--run-name>, by default <data>-<model> ("-quick" in quick mode)."""
    name = cfg.run_name or f"{cfg.data}-{cfg.model}" + ("-quick" if cfg.quick else "")
    return RunFolder.of(PROJECT, name, cfg.runs_dir)


def make_config(**values: Any) -> TrainConfig:
    """A TrainConfig with the model's recipe under ``values`` (for code that trains without a command
    line, such as the benchmarks)."""
    return TrainConfig(**{**RECIPES.get(values.get("model", "autoencoder"), {}), **values})


def parse(argv: Sequence[str] | None) -> TrainConfig:
    def recipe(given: dict[str, Any]) -> dict[str, Any]:
        return dict(RECIPES.get(given.get("model") or "autoencoder", {}))

    cfg = project.parse_train_config(TrainConfig, argv, run_of, quick=QUICK, defaults=recipe)
    if cfg.test_fraction + cfg.val_fraction >= 1:
        raise UserError("--test-fraction + --val-fraction must leave rows to train on (sum < 1)")
    return cfg


# --- Training ------------------------------------------------------------------------------------------


def net_spec(cfg: TrainConfig, num_features: int) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "num_features": num_features,
        "hidden": cfg.hidden,
        "latent": cfg.latent,
        "dropout": cfg.dropout,
    }


def _loss_fn(cfg: TrainConfig, pos_weight: float):  # noqa: ANN202 - (output, target) -> loss
    if cfg.model == "autoencoder":
        return lambda out, z: trimmed_mean(((out.float() - z) ** 2).mean(1), cfg.trim)
    if cfg.model == "deep_svdd":
        return lambda dist, _: trimmed_mean(dist.float(), cfg.trim)
    if cfg.loss == "focal":
        return lambda logits, y: focal_loss(logits.float(), y, cfg.focal_gamma)
    weight = torch.tensor(pos_weight if cfg.loss == "weighted" else 1.0)
    return lambda logits, y: F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=weight)


def _batches(z: torch.Tensor, target: torch.Tensor, batch_size: int, seed: int):  # noqa: ANN202
    """Shuffled (z, target) batches: tensors indexed in place in one process, a DistributedSampler's
    share of every global batch under torchrun."""
    if get_world_size() == 1:
        return TensorBatches(z, target, batch_size, shuffle=True)
    return make_loader(TensorDataset(z, target), batch_size, shuffle=True, seed=seed, drop_last=True)


@torch.no_grad()
def _scores(scorer: nn.Module, x: torch.Tensor, batch_size: int = 65_536) -> torch.Tensor:
    scorer.eval()
    return torch.cat([scorer(b) for b in x.split(batch_size)]) if len(x) else torch.zeros(0)


def build_scorer(info: dict[str, Any]) -> FraudScorer:
    """The untrained scorer that model_info.json (or model.json) describes."""
    spec = info["net"]
    pre = Preprocess(spec["num_features"], info["preprocessing"].get("squash", 0.0))
    return FraudScorer(pre, build_net(spec), score_kind(spec["model"]))


def fit_detector(
    cfg: TrainConfig,
    data: FraudData,
    split: Split,
    device: torch.device,
    *,
    run: RunFolder | None = None,
    verbose: bool = True,
) -> tuple[FraudScorer, LoopState, dict[str, Any]]:
    """Train ``cfg.model`` on ``split.train`` (selected on ``split.val``); return the scorer (on the CPU,
    eval mode), the loop's state and model_info (features, scaling, threshold, validation metrics)."""
    supervised = cfg.model in SUPERVISED
    if supervised and not data.labelled:
        raise UserError(
            f"--model {cfg.model} learns from labels, and {data.name} has none: "
            "use --model autoencoder or deep_svdd, or give --label-column"
        )
    x_train, y_train = data.x[split.train], data.y[split.train]
    if cfg.normal_only and not supervised and data.labelled:
        x_train = x_train[y_train == 0]
    if supervised and int(y_train.sum()) == 0:
        raise UserError(f"the training rows of {data.name} hold no fraud: a supervised model cannot learn")
    preprocess = Preprocess.fit(x_train, log_columns_of(data.features, cfg.log_columns), cfg.squash)
    with torch.no_grad():
        z_train, z_val = preprocess(x_train), preprocess(data.x[split.val])
    spec = net_spec(cfg, z_train.shape[1])
    net = build_net(spec)
    if cfg.model == "autoencoder":
        net.set_range(z_train)
        target = z_train
    elif cfg.model == "deep_svdd":
        net.set_center(z_train)
        target = torch.zeros(len(z_train))
    else:
        target = y_train.float()
    positives = max(int(y_train.sum()), 1)
    loss_fn = _loss_fn(cfg, (len(y_train) - positives) / positives)
    y_val = data.y[split.val]
    val_rows = torch.randperm(len(z_val), generator=torch.Generator().manual_seed(cfg.seed))[:100_000]

    def validate(module: nn.Module) -> dict[str, float]:
        zv, tv = (
            z_val[val_rows].to(device),
            (z_val if cfg.model == "autoencoder" else y_val.float())[val_rows],
        )
        out = torch.cat([module(b) for b in zv.split(65_536)])
        if cfg.model == "deep_svdd":
            return {"val_loss": float(out.float().mean())}
        row = {"val_loss": float(loss_fn(out, tv.to(device)))}
        if supervised and 0 < int(tv.sum()) < len(tv):
            from sklearn.metrics import average_precision_score

            row["val_ap"] = float(average_precision_score(tv.numpy(), out.float().cpu().numpy()))
        return row

    monitor = "val_ap" if supervised and 0 < int(y_val.sum()) < len(y_val) else "val_loss"
    steps_per_epoch = math.ceil(len(z_train) / cfg.batch_size)
    started = time.perf_counter()
    state = train_loop(
        net,
        torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        _batches(z_train, target, cfg.batch_size, cfg.seed),
        loss_fn=loss_fn,
        device=device,
        budget=Budget(
            steps=min(cfg.max_steps, math.ceil(cfg.max_epochs * steps_per_epoch)),
            seconds=cfg.time_budget or None,
        ),
        evaluation=Evaluation(validate, every_steps=cfg.eval_every),
        selection=Selection(monitor, mode="max" if monitor == "val_ap" else "min", keep_best=True),
        amp=False,
        run=run,
        resume=cfg.resume and run is not None,
        config=cfg,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started
    scorer = FraudScorer(preprocess, net.cpu(), score_kind(cfg.model)).eval()
    if not supervised:  # a typical training row scores 1
        scorer.score_scale.fill_(float(_scores(scorer, x_train).median().clamp_min(1e-12)))
    info = model_info(cfg, data, split, scorer, spec, preprocess)
    info["training"] = {
        "steps": state.step,
        "kept_step": state.best_step,
        "seconds": state.seconds,
        "wall_seconds": train_seconds,
        "threads": torch.get_num_threads(),
        "train_rows": len(x_train),
    }
    return scorer, state, info


def choose_threshold(cfg: TrainConfig, y_val: torch.Tensor, s_val: torch.Tensor) -> dict[str, Any]:
    """By cost on the validation rows when they hold frauds (and labels), else by the alert budget."""
    if 0 < int(y_val.sum()) < len(y_val):
        chosen = cost_threshold(y_val, s_val, cfg.cost_miss, cfg.cost_review)
        return {
            "value": chosen["threshold"],
            "how": "lowest cost on the validation rows",
            "validation": chosen,
        }
    value = float(torch.quantile(s_val.double(), 1 - cfg.alert_budget)) if len(s_val) else math.inf
    return {"value": value, "how": f"the top {100 * cfg.alert_budget:g}% of the validation rows' scores"}


def model_info(
    cfg: TrainConfig,
    data: FraudData,
    split: Split,
    scorer: FraudScorer,
    spec: dict[str, Any],
    preprocess: Preprocess,
) -> dict[str, Any]:
    """model_info.json: how to rebuild the scorer and feed it; its threshold and validation metrics."""
    s_val = _scores(scorer, data.x[split.val])
    y_val = data.y[split.val]
    threshold = choose_threshold(cfg, y_val, s_val)
    metrics: dict[str, Any] = {}
    if data.labelled and 0 < int(y_val.sum()) < len(y_val):
        metrics["val"] = score_report(
            y_val, s_val, threshold=threshold["value"], cost_miss=cfg.cost_miss, cost_review=cfg.cost_review
        )
    return {
        "net": spec,
        "score": {
            "kind": scorer.kind,
            "scale": float(scorer.score_scale),
            "higher_is": "more suspicious" + (" (P(fraud))" if scorer.kind == "probability" else ""),
        },
        "preprocessing": preprocess.stats(data.features),
        "threshold": threshold,
        "costs": {"miss": cfg.cost_miss, "review": cfg.cost_review},
        "dataset": data.name,
        "data": {
            "source": data.kind or cfg.data,  # "synthetic" where quick mode fell back to it
            "data_file": cfg.data_file,
            "label_column": cfg.label_column,
            "time_column": cfg.time_column,
            "drop": list(cfg.drop),
            "quick": cfg.quick,
            "split": cfg.split,
            "test_fraction": cfg.test_fraction,
            "val_fraction": cfg.val_fraction,
            "seed": cfg.seed,
        },
        "split": split.describe(data.y),
        "labelled": data.labelled,
        "metrics": metrics,
    }


def load_run(run_dir: str, device: str | torch.device = "cpu") -> tuple[FraudScorer, dict[str, Any]]:
    """The trained scorer of a run folder (eval mode) and its model_info.json: the network's weights from
    checkpoint.pt, the scaling statistics and score scale from model_info.json."""

    def build(info: dict[str, Any]) -> nn.Module:
        return build_net(info["net"])

    net, info = load_trained(run_dir, build, "cpu")
    scorer = FraudScorer(Preprocess.from_stats(info["preprocessing"]), net, score_kind(info["net"]["model"]))
    scorer.score_scale.fill_(info["score"]["scale"])
    return scorer.to(device).eval(), info


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train per the flags; return model_info."""
    cfg = parse(argv)
    run = run_of(cfg)
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # launched by torchrun
    if distributed:
        setup_distributed("cpu" if cfg.device == "auto" else cfg.device)
    try:
        device = project.start_training(cfg, run)
        data = load_fraud_data(
            cfg.data,
            quick=cfg.quick,
            data_file=cfg.data_file,
            label_column=cfg.label_column,
            time_column=cfg.time_column,
            drop=cfg.drop,
        )
        split = split_rows(
            data, cfg.split, test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction, seed=cfg.seed
        )
        if cfg.split == "all" and cfg.model in SUPERVISED:
            raise UserError("--split all scores the rows a model trained on: only for unsupervised models")
        if is_main_process():
            print(
                f"{data.source}: {len(data):,} rows, {len(data.features)} features; {split.describe(data.y)}"
            )
        scorer, state, info = fit_detector(cfg, data, split, device, run=run)
        if is_main_process():
            run.write_info(info)
            run.savefig(plot_history(state.rows, title=f"{cfg.model} on {data.name}"), "loss")
            s_val = _scores(scorer, data.x[split.val])
            run.savefig(
                plot_scores(
                    s_val,
                    data.y[split.val],
                    info["threshold"]["value"],
                    title=f"validation scores, {data.name}",
                ),
                "val_scores",
            )
            _print_summary(info)
            print(f"run folder: {run.path}")
        return info
    finally:
        if distributed:
            cleanup_distributed()


def _print_summary(info: dict[str, Any]) -> None:
    t, training = info["threshold"], info["training"]
    print(
        f"trained {training['steps']} steps in {training['seconds']:.1f} s "
        f"(kept step {training['kept_step']}); threshold {t['value']:.4g} ({t['how']})"
    )
    val = info["metrics"].get("val")
    if val:
        at = val["at_threshold"]
        print(
            f"validation: AUPRC {val['ap']:.3f}, ROC-AUC {val['roc_auc']:.3f} "
            f"(prevalence {val['prevalence']:.4f}); at the threshold: {at['flagged']:,} flagged, "
            f"precision {at['precision']:.3f}, recall {at['recall']:.3f}"
        )


if __name__ == "__main__":
    main()
