"""Train a sentiment model on IMDB and leave a complete run folder behind.

    python -m projects.sentiment_analyzer train                   # nbsvm: 92% in about 2 minutes on a CPU
    python -m projects.sentiment_analyzer train --model baseline  # scikit-learn TF-IDF + logistic regression
    python -m projects.sentiment_analyzer train --model minilm --train-subset 2000 --test-subset 1000
    python -m projects.sentiment_analyzer train --quick           # synthetic reviews, offline, seconds
    torchrun --nproc_per_node 2 -m projects.sentiment_analyzer train   # the same run on 2 processes

``nbsvm`` and ``minilm`` train with :func:`dlkit.train.train_loop`: after every epoch it scores the
validation reviews (held out from the training data), keeps the weights of the epoch with the lowest
validation loss and stops after ``--patience`` epochs without a better one. The test reviews are scored
once, at the end, with the kept weights. ``baseline`` is scikit-learn's own fit (no loop).

The run folder (``runs/sentiment_analyzer/<dataset>-<model>/``, under ``$DLKIT_RUNS`` when set) holds
config.json, metrics.csv (one row per epoch), history.png, val_/test_calibration.png and _confusion.png,
checkpoint.pt (``--resume`` continues it), vocab.json or tokenizer/ (how text becomes the model's
input) and model_info.json (how to rebuild the model; validation and test metrics).

``train_seconds`` counts from the end of reading the data to the trained model: tokenizing, the n-gram
table and naive-Bayes ratios (or the MiniLM tokenizer), the epochs and their validation passes; the
final test pass is not in it (``test_seconds``). ``loop_seconds`` is the optimizer steps alone.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit import project
from dlkit.config import flag
from dlkit.device import describe_device
from dlkit.errors import UserError
from dlkit.plots import plot_history
from dlkit.runs import RunFolder
from dlkit.text import tokenize
from dlkit.train import (
    Budget,
    Evaluation,
    Selection,
    cleanup_distributed,
    is_main_process,
    setup_distributed,
    train_loop,
)
from projects.sentiment_analyzer.data import (
    DATASETS,
    SYNTHETIC_NOTE,
    Splits,
    length_batches,
    load_splits,
    training_batches,
)
from projects.sentiment_analyzer.evaluate import report, scores_of
from projects.sentiment_analyzer.features import (
    BertFeaturizer,
    CountFeaturizer,
    NgramFeaturizer,
    NgramTable,
    nb_ratios,
)
from projects.sentiment_analyzer.models import MODELS, MiniLMClassifier, NBLinear, TfidfLogistic

__all__ = ["TrainConfig", "main", "run_of", "tfidf_logistic_from_sklearn"]

# Defaults per model where they differ from the fields' (nbsvm's); with --quick, QUICK_RECIPES too.
RECIPES: dict[str, dict[str, Any]] = {
    "nbsvm": {},
    "baseline": {},
    "minilm": {"num_epochs": 2, "lr": 5e-5, "batch_size": 32, "weight_decay": 0.01},
}
DATASET_NAMES = {
    "imdb": "IMDB Large Movie Review Dataset (Maas et al. 2011)",
    "synthetic": f"synthetic reviews ({SYNTHETIC_NOTE})",
}
QUICK = {"dataset": "synthetic", "train_subset": 1000, "test_subset": 400, "min_freq": 1}
QUICK_RECIPES: dict[str, dict[str, Any]] = {  # a few short reviews need more (and larger) steps
    "nbsvm": {"num_epochs": 10, "lr": 0.1, "patience": 3},
    "minilm": {"num_epochs": 1},
}


@dataclass
class TrainConfig(project.TrainConfig):
    """Train a sentiment classifier on IMDB reviews (--quick: made-up reviews, offline, seconds)."""

    model: str = flag("nbsvm", help="nbsvm (from scratch), baseline (scikit-learn) or minilm", choices=MODELS)
    dataset: str = flag(
        "imdb", help="imdb, or synthetic (made-up reviews, for smoke tests)", choices=DATASETS
    )
    num_epochs: int = flag(3, help="passes over the training reviews (minilm's default: 2)")
    lr: float = flag(0.02, help="learning rate of AdamW (minilm's default: 5e-5)")
    batch_size: int = flag(256, help="reviews per optimizer step (minilm's default: 32)")
    weight_decay: float = flag(1e-6, help="AdamW's decoupled weight decay (minilm's default: 0.01)")
    patience: int = flag(1, help="stop after this many epochs without a lower validation loss", min=1)
    val_fraction: float = 0.1
    train_subset: int | None = flag(
        None, help="draw this many training reviews (before the validation split)"
    )
    test_subset: int | None = flag(None, help="score this many test reviews (default: all)")
    ngram: int = flag(3, help="nbsvm: longest n-gram (baseline: always 2)", min=1, max=5)
    min_freq: int = flag(2, help="n-grams found in fewer training reviews are dropped", min=1)
    max_ngrams: int = flag(800_000, help="the n-gram table's size", min=2)
    baseline_c: float = flag(10.0, help="baseline: inverse L2 strength of LogisticRegression", above=0)
    max_len: int = flag(256, help="minilm: tokens read per review", min=8, max=512)
    warmup: float = flag(0.06, help="minilm: fraction of the steps warming the lr up", min=0, max=0.5)
    amp: bool | None = flag(None, help="minilm: bf16 autocast (default: where the hardware runs it natively)")


def recipe(given: Mapping[str, Any]) -> dict[str, Any]:
    """The model's defaults (and its quick ones with --quick) for ``parse_train_config``."""
    model = given.get("model", "nbsvm")
    values = dict(RECIPES.get(model, {}))
    if given.get("quick"):
        values.update(QUICK_RECIPES.get(model, {}))
    return values


def run_of(cfg: TrainConfig) -> RunFolder:
    return RunFolder.of("sentiment_analyzer", cfg.run_name or f"{cfg.dataset}-{cfg.model}", cfg.runs_dir)


@dataclass
class Trained:
    """What a trainer hands back: the model (best weights), its featurizer and how to rebuild it."""

    model: nn.Module
    featurizer: Any
    kwargs: dict[str, Any]
    loop_seconds: float


# --- The loop that nbsvm and minilm share --------------------------------------------------------------


def validation(
    id_lists: Sequence[Sequence[int]], labels: torch.Tensor, collate: Any, device: torch.device, amp: Any
) -> Evaluation:
    """Validation loss and accuracy of the held-out reviews, after every epoch."""
    groups = length_batches([len(ids) for ids in id_lists], 256, shuffle=False)
    inputs = [collate([id_lists[i] for i in idx]) for idx in groups]

    @torch.no_grad()
    def fn(model: nn.Module) -> dict[str, float]:
        from dlkit.device import autocast, resolve_amp_dtype

        z = torch.empty(len(id_lists))
        with autocast(device, resolve_amp_dtype(amp, device)):
            for idx, x in zip(groups, inputs, strict=True):
                logits = model(*(t.to(device) for t in x)).float()
                z[idx] = (logits[:, 1] - logits[:, 0]).cpu()
        return {
            "val_loss": F.binary_cross_entropy_with_logits(z, labels.float()).item(),
            "val_acc": ((z > 0).long() == labels).float().mean().item(),
        }

    return Evaluation(fn)


def run_loop(
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    featurizer: Any,
    x_train: Sequence[Sequence[int]],
    splits: Splits,
    device: torch.device,
    run: RunFolder,
    *,
    by_length: bool = False,
    schedule: Any = None,
    amp: bool | None = False,
    clip_grad_norm: float | None = None,
) -> float:
    """``train_loop`` for ``cfg.num_epochs`` epochs, selecting on the validation loss; returns the
    seconds of optimizer steps."""
    x_val = featurizer.id_lists(splits.val.texts)
    data = training_batches(
        x_train, splits.train.labels, cfg.batch_size, featurizer.collate, seed=cfg.seed, by_length=by_length
    )
    state = train_loop(
        model, optimizer, data, loss_fn=F.cross_entropy, device=device, budget=Budget(epochs=cfg.num_epochs),
        evaluation=validation(x_val, splits.val.labels, featurizer.collate, device, amp),
        selection=Selection("val_loss", keep_best=True, patience=cfg.patience), schedule=schedule,
        amp=amp, clip_grad_norm=clip_grad_norm, run=run, resume=cfg.resume, config=cfg,
    )  # fmt: skip
    if is_main_process():
        run.savefig(plot_history(state.rows, title=f"{cfg.model} on {cfg.dataset}"), "history")
    return state.seconds


# --- nbsvm: naive-Bayes-weighted n-grams, trained with AdamW --------------------------------------------


def train_nbsvm(cfg: TrainConfig, splits: Splits, device: torch.device, run: RunFolder) -> Trained:
    """Build the n-gram table and ratios from the training reviews, then fit w and b with AdamW."""
    tokens = [tokenize(text) for text in splits.train.texts]  # once: for the table and for the ids
    table = NgramTable.from_tokens(tokens, ngram=cfg.ngram, min_freq=cfg.min_freq, max_size=cfg.max_ngrams)
    featurizer = NgramFeaturizer(table)
    x_train = [table.encode_tokens(t) for t in tokens]
    del tokens
    model = NBLinear(len(table))
    model.set_ratios(nb_ratios(x_train, splits.train.labels.tolist(), len(table)))
    if is_main_process():
        print(f"{len(table):,} n-grams (1 to {cfg.ngram} words, in >= {cfg.min_freq} training reviews)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seconds = run_loop(cfg, model, optimizer, featurizer, x_train, splits, device, run)
    return Trained(model, featurizer, {"vocab_size": len(table)}, seconds)


# --- baseline: scikit-learn TF-IDF + logistic regression, then held as tensors -------------------------


def tfidf_logistic_from_sklearn(vectorizer: Any, classifier: Any) -> tuple[TfidfLogistic, CountFeaturizer]:
    """A fitted TfidfVectorizer (dlkit tokenizer, 1-2-grams, l2 norm) and binary LogisticRegression as a
    :class:`TfidfLogistic` and its featurizer: the same probabilities, with no pickle to load."""
    names = vectorizer.get_feature_names_out().tolist()
    featurizer = CountFeaturizer(NgramTable(["<pad>", *names], ngram=vectorizer.ngram_range[1]))
    model = TfidfLogistic(len(names) + 1, sublinear_tf=vectorizer.sublinear_tf)
    model.idf[1:] = torch.from_numpy(vectorizer.idf_).float()
    model.coef[1:] = torch.from_numpy(classifier.coef_[0]).float()
    model.intercept[0] = float(classifier.intercept_[0])
    return model, featurizer


def train_baseline(cfg: TrainConfig, splits: Splits, device: torch.device, run: RunFolder) -> Trained:
    """TfidfVectorizer(1-2-grams, sublinear tf) + LogisticRegression (scikit-learn's fit, no loop)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
        min_df=cfg.min_freq, max_features=cfg.max_ngrams, sublinear_tf=True,
    )  # fmt: skip
    x_train = vectorizer.fit_transform(splits.train.texts)
    classifier = LogisticRegression(C=cfg.baseline_c, max_iter=1000).fit(x_train, splits.train.labels.numpy())
    seconds = time.perf_counter() - start
    model, featurizer = tfidf_logistic_from_sklearn(vectorizer, classifier)
    z = {
        name: torch.from_numpy(classifier.decision_function(vectorizer.transform(data.texts))).float()
        for name, data in (("train", splits.train), ("val", splits.val))
    }
    row = {"step": 1, "epoch": 1, "seconds": round(seconds, 3)}
    for name, data in (("train", splits.train), ("val", splits.val)):
        row[f"{name}_loss"] = F.binary_cross_entropy_with_logits(z[name], data.labels.float()).item()
        row[f"{name}_acc"] = ((z[name] > 0).long() == data.labels).float().mean().item()
    run.metrics_logger([row])
    print("  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("_loss", "_acc"))))
    return Trained(model, featurizer, {"vocab_size": len(featurizer.table), "sublinear_tf": True}, seconds)


# --- minilm: fine-tune all-MiniLM-L6-v2 ----------------------------------------------------------------


def warmup_linear(total_steps: int, warmup: float) -> Any:
    """The lr factor of step s: up linearly over the first ``warmup`` of the steps, then down to 0."""
    top = max(1, int(warmup * total_steps))
    return lambda step, used: (
        (step + 1) / top if step < top else max(0.0, (total_steps - step) / max(1, total_steps - top))
    )


def train_minilm(cfg: TrainConfig, splits: Splits, device: torch.device, run: RunFolder) -> Trained:
    """AdamW (no decay on biases and LayerNorms), linear warm-up and decay, gradients clipped to norm 1,
    bf16 autocast where it pays, batches of reviews of similar length."""
    from dlkit.pretrained_text import TextModelNotAvailableError, load_text_encoder

    try:
        encoder = load_text_encoder(download=False)
    except TextModelNotAvailableError as e:
        raise UserError(str(e)) from e
    print(f"encoder: {encoder.source}")
    featurizer = BertFeaturizer(encoder.tokenizer, cfg.max_len)
    x_train = featurizer.id_lists(splits.train.texts)
    encoder.model.pooler = None  # its [CLS] pooler is unused: we mean-pool (and it would not train)
    model = MiniLMClassifier(encoder.model, encoder.hidden_size)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type == "cuda")
    steps = cfg.num_epochs * math.ceil(len(x_train) / cfg.batch_size)
    seconds = run_loop(
        cfg, model, optimizer, featurizer, x_train, splits, device, run, by_length=True,
        schedule=warmup_linear(steps, cfg.warmup), amp=cfg.amp, clip_grad_norm=1.0,
    )  # fmt: skip
    kwargs = {"encoder_config": encoder.model.config.to_dict(), "hidden_size": encoder.hidden_size}
    for key in ("torch_dtype", "dtype"):  # the weights are float32, whatever the copy loaded was
        if key in kwargs["encoder_config"]:
            kwargs["encoder_config"][key] = "float32"
    return Trained(model, featurizer, kwargs, seconds)


TRAINERS = {"nbsvm": train_nbsvm, "baseline": train_baseline, "minilm": train_minilm}


# --- main ----------------------------------------------------------------------------------------------


def preprocessing(cfg: TrainConfig, featurizer: Any) -> dict[str, Any]:
    if cfg.model == "minilm":
        return {"featurizer": featurizer.kind, "max_len": cfg.max_len, "clean": "dlkit.text.clean_text"}
    return {"featurizer": featurizer.kind, "tokenize": "dlkit.text.tokenize", "ngram": featurizer.table.ngram}


def finish(cfg: TrainConfig, run: RunFolder, splits: Splits, trained: Trained, device: torch.device,
           seconds: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Score the kept model on the validation reviews and, once, on the test reviews; write the run's
    featurizer, plots and model_info.json."""
    model = trained.model.to(device).eval()
    title = f"{cfg.model} on {cfg.dataset}"
    metrics: dict[str, Any] = {}
    start = time.perf_counter()
    for split in ("val", "test"):
        data = splits.of(split)
        z = scores_of(model, trained.featurizer, data.texts, device)
        metrics[split] = report(run, split, z, data.labels, title)
    test_seconds = time.perf_counter() - start
    if cfg.model == "baseline":  # scikit-learn trained it: the loop wrote no checkpoint
        from dlkit.checkpoint import save_checkpoint

        save_checkpoint(run.checkpoint, model=model, epoch=1)
    trained.featurizer.save(run.path)
    info = {
        "architecture": {"name": cfg.model, "kwargs": trained.kwargs},
        "num_classes": 2,
        "classes": ["neg", "pos"],
        "preprocessing": preprocessing(cfg, trained.featurizer),
        "dataset": DATASET_NAMES[cfg.dataset],  # the data's source line names local files: not shipped
        "dataset_name": cfg.dataset,
        "metrics": metrics,
        "num_reviews": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "train_seconds": round(seconds["train"], 1),
        "train_cpu_seconds": round(seconds["train_cpu"], 1),
        "loop_seconds": round(trained.loop_seconds, 1),
        "test_seconds": round(test_seconds, 1),
        "threads": torch.get_num_threads(),
    }
    run.write_info(info)
    val, test = metrics["val"], metrics["test"]
    print(
        f"{cfg.model}: validation accuracy {val['acc']:.4f} ({len(splits.val):,} reviews); test accuracy "
        f"{test['acc']:.4f}, F1 {test['f1']:.4f}, ECE {test['ece']:.4f} ({len(splits.test):,} reviews, "
        f"scored once); trained in {seconds['train']:.1f} s ({seconds['train_cpu']:.1f} s of CPU) on "
        f"{describe_device(device)}; {run.path}"
    )
    return info


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train per the flags in ``argv``; returns model_info (None on the other torchrun processes)."""
    cfg = project.parse_train_config(TrainConfig, argv, run_of, quick=QUICK, defaults=recipe)
    torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if cfg.model == "baseline" and torchrun:
        raise UserError("the baseline trains with scikit-learn in one process: run it without torchrun")
    run = run_of(cfg)
    device = project.start_training(cfg, run)
    if cfg.model == "baseline":
        device = torch.device("cpu")  # scikit-learn's fit; scoring the tensors copy is cheap on a CPU
    device = setup_distributed(device)
    try:
        splits = load_splits(
            cfg.dataset, val_fraction=cfg.val_fraction, train_subset=cfg.train_subset,
            test_subset=cfg.test_subset, seed=cfg.seed,
        )  # fmt: skip
        if is_main_process():
            print(f"{splits.describe()}; {cfg.model} on {describe_device(device)}")
        start, cpu_start = time.perf_counter(), time.process_time()
        trained = TRAINERS[cfg.model](cfg, splits, device, run)
        seconds = {"train": time.perf_counter() - start, "train_cpu": time.process_time() - cpu_start}
        return finish(cfg, run, splits, trained, device, seconds) if is_main_process() else None
    finally:
        cleanup_distributed()
