"""Train a sentiment model on IMDB and leave a complete run folder behind.

    python -m projects.sentiment_analyzer train                   # nbsvm: 92% in about 2 minutes on a CPU
    python -m projects.sentiment_analyzer train --model baseline  # scikit-learn TF-IDF + logistic regression
    python -m projects.sentiment_analyzer train --model minilm --train-subset 2000 --test-subset 1000
    python -m projects.sentiment_analyzer train --quick              # synthetic data, seconds

The run folder (default ``runs/sentiment_analyzer/<dataset>-<model>/``, under ``$DLKIT_RUNS`` when set)
holds config.json, metrics.csv (one row per epoch), loss.png, accuracy.png, calibration.png,
confusion.png, checkpoint.pt (the weights, ``dlkit.checkpoint``), vocab.json or tokenizer/ (how text
becomes the model's input) and model_info.json (how to rebuild the model, and its test metrics).
:func:`load_trained` turns the folder back into a model and its featurizer.

Timing: ``train_seconds`` counts from the end of reading the data to the trained model, so it includes
tokenizing (train and test), the n-gram table and the naive-Bayes ratios (or the MiniLM tokenizer), and
the test-set evaluation after each epoch: an upper bound on the training alone.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.checkpoint import load_checkpoint, save_checkpoint
from dlkit.config import parse_config, save_config
from dlkit.data import DatasetNotFoundError, TextClassificationData
from dlkit.device import describe_device, get_device, seed_everything
from dlkit.lesson import runs_root
from dlkit.metrics import CSVLogger
from dlkit.plots import plot_curves, save_figure
from dlkit.progress import progress
from dlkit.text import pad_batch, tokenize
from dlkit.train import resolve_amp_dtype
from projects.sentiment_analyzer.data import load_splits
from projects.sentiment_analyzer.features import (
    BertFeaturizer,
    CountFeaturizer,
    NgramFeaturizer,
    NgramTable,
    load_featurizer,
    nb_ratios,
)
from projects.sentiment_analyzer.models import MiniLMClassifier, NBLinear, TfidfLogistic, build_model

__all__ = [
    "TrainConfig",
    "length_batches",
    "load_trained",
    "main",
    "run_dir_of",
    "tfidf_logistic_from_sklearn",
]

# Defaults per model where they differ: epochs, learning rate, batch size.
RECIPES: dict[str, dict[str, Any]] = {
    "nbsvm": {"num_epochs": 2, "lr": 0.02, "batch_size": 256, "weight_decay": 1e-6},
    "baseline": {"num_epochs": 1, "lr": 0.0, "batch_size": 0, "weight_decay": 0.0},
    "minilm": {"num_epochs": 2, "lr": 5e-5, "batch_size": 32, "weight_decay": 0.01},
}


@dataclass
class TrainConfig:
    """Train a sentiment classifier; every field is a flag (--model, --num-epochs, ...)."""

    model: str = field(
        default="nbsvm", metadata={"help": "nbsvm (from scratch), baseline (sklearn) or minilm"}
    )
    dataset: str = field(default="imdb", metadata={"help": "imdb, or synthetic (made up, for smoke tests)"})
    num_epochs: int | None = field(default=None, metadata={"help": "default: the model's recipe"})
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    ngram: int = field(default=3, metadata={"help": "nbsvm: longest n-gram (baseline: always 2)"})
    min_freq: int = field(default=2, metadata={"help": "n-grams found in fewer training reviews are dropped"})
    max_ngrams: int = field(default=800_000, metadata={"help": "the n-gram table's size"})
    baseline_c: float = field(
        default=10.0, metadata={"help": "baseline: inverse L2 strength of LogisticRegression"}
    )
    max_len: int = field(default=256, metadata={"help": "minilm: tokens read per review (at most 512)"})
    warmup: float = field(default=0.06, metadata={"help": "minilm: fraction of steps warming the lr up"})
    amp: bool | None = field(
        default=None, metadata={"help": "minilm: bf16 autocast (default: where it pays)"}
    )
    train_subset: int | None = None
    test_subset: int | None = None
    run_name: str = field(default="", metadata={"help": "default: <dataset>-<model>"})
    runs_dir: str = field(
        default="", metadata={"help": "default: $DLKIT_RUNS/sentiment_analyzer or runs/..."}
    )
    quick: bool = field(default=False, metadata={"help": "synthetic data, small: seconds"})
    device: str = "auto"
    seed: int = 0


QUICK = {"dataset": "synthetic", "train_subset": 1000, "test_subset": 400, "min_freq": 1}
# With --quick, where they differ: a few short synthetic reviews need more (and larger) steps.
QUICK_RECIPES: dict[str, dict[str, Any]] = {
    "nbsvm": {"num_epochs": 10, "lr": 0.1},
    "minilm": {"num_epochs": 1},
}


def run_dir_of(cfg: TrainConfig) -> Path:
    name = cfg.run_name or f"{cfg.dataset}-{cfg.model}"
    return (Path(cfg.runs_dir) if cfg.runs_dir else runs_root() / "sentiment_analyzer") / name


def recipe(cfg: TrainConfig, key: str) -> Any:
    value = getattr(cfg, key)
    if value is None and cfg.quick:
        value = QUICK_RECIPES.get(cfg.model, {}).get(key)
    return RECIPES[cfg.model][key] if value is None else value


# --- nbsvm: naive-Bayes-weighted n-grams, trained with AdamW -----------------------------------------


def _flat(id_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated ids (N,) and where each list starts (B,): EmbeddingBag's input, no padding."""
    lengths = torch.tensor([len(ids) for ids in id_lists])
    ids = torch.tensor([i for lst in id_lists for i in lst], dtype=torch.long)
    return ids, torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])


@torch.no_grad()
def _nbsvm_scores(model: NBLinear, id_lists: Sequence[Sequence[int]], batch_size: int = 2048) -> torch.Tensor:
    device = model.weight.device
    scores = [
        model.score_flat(*(t.to(device) for t in _flat(id_lists[s : s + batch_size]))).cpu()
        for s in range(0, len(id_lists), batch_size)
    ]
    return torch.cat(scores)  # (N,)


def train_nbsvm(
    cfg: TrainConfig,
    train: TextClassificationData,
    test: TextClassificationData,
    device: torch.device,
    log: Any,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Build the n-gram table and ratios, then fit w and b with AdamW on the logistic loss."""
    tokens = [tokenize(text) for text in train.texts]  # once: for the table and for the ids
    table = NgramTable.from_tokens(tokens, ngram=cfg.ngram, min_freq=cfg.min_freq, max_size=cfg.max_ngrams)
    featurizer = NgramFeaturizer(table)
    x_train, x_test = [table.encode_tokens(t) for t in tokens], featurizer.id_lists(test.texts)
    del tokens
    model = NBLinear(len(table))
    model.set_ratios(nb_ratios(x_train, train.labels.tolist(), len(table)))
    print(f"{len(table):,} n-grams (1 to {cfg.ngram} words, in >= {cfg.min_freq} reviews)")
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe(cfg, "lr"), weight_decay=recipe(cfg, "weight_decay")
    )
    y_train = train.labels.float()
    batch_size = recipe(cfg, "batch_size")
    for epoch in range(1, recipe(cfg, "num_epochs") + 1):
        start, total, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(x_train)).tolist()
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, offsets = _flat([x_train[i] for i in idx])
            z = model.score_flat(ids.to(device), offsets.to(device))  # (B,)
            loss = F.binary_cross_entropy_with_logits(z, y_train[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        z_test = _nbsvm_scores(model, x_test)
        log(epoch, total / seen, z_test, time.perf_counter() - start)
    return model.eval(), featurizer, {"vocab_size": len(table)}


# --- baseline: scikit-learn TF-IDF + logistic regression, then held as tensors -----------------------


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


def train_baseline(
    cfg: TrainConfig,
    train: TextClassificationData,
    test: TextClassificationData,
    device: torch.device,
    log: Any,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """TfidfVectorizer(1-2-grams, sublinear tf) + LogisticRegression, copied into a TfidfLogistic."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(
        tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
        min_df=cfg.min_freq, max_features=cfg.max_ngrams, sublinear_tf=True,
    )  # fmt: skip
    x_train = vectorizer.fit_transform(train.texts)
    classifier = LogisticRegression(C=cfg.baseline_c, max_iter=1000).fit(x_train, train.labels.numpy())
    model, featurizer = tfidf_logistic_from_sklearn(vectorizer, classifier)
    p_train = torch.from_numpy(classifier.predict_proba(x_train)[:, 1]).clamp(1e-7, 1 - 1e-7)
    loss = F.binary_cross_entropy(p_train.double(), train.labels.double()).item()
    z_test = torch.from_numpy(classifier.decision_function(vectorizer.transform(test.texts))).float()
    log(1, loss, z_test, time.perf_counter() - start)
    return model.eval(), featurizer, {"vocab_size": len(featurizer.table), "sublinear_tf": True}


# --- minilm: fine-tune all-MiniLM-L6-v2 --------------------------------------------------------------


def length_batches(
    lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0
) -> list[list[int]]:
    """Batches of indices of similar length (little padding). Shuffled: sorted within chunks of 50
    batches, then the batches in random order; else sorted by length overall (for evaluation)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        chunk = 50 * batch_size
        order = [
            i
            for s in range(0, len(order), chunk)
            for i in sorted(order[s : s + chunk], key=lengths.__getitem__)
        ]
    else:
        order.sort(key=lengths.__getitem__)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


@torch.no_grad()
def minilm_scores(
    model: nn.Module,
    id_lists: Sequence[Sequence[int]],
    device: torch.device,
    amp: bool | None,
    batch_size: int = 256,
) -> torch.Tensor:
    """z = logit(pos) - logit(neg) (N,) of tokenized texts, in their order, batched by length."""
    model.eval()
    amp_dtype = resolve_amp_dtype(amp, device)
    z = torch.empty(len(id_lists))
    for idx in length_batches([len(x) for x in id_lists], batch_size, shuffle=False):
        ids = pad_batch([id_lists[i] for i in idx])[0].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(ids).float()  # (B, 2)
        z[idx] = (logits[:, 1] - logits[:, 0]).cpu()
    return z


def warmup_linear(total_steps: int, warmup: float) -> Any:
    """The lr factor: up linearly over the first ``warmup`` fraction of steps, then down linearly to 0."""
    top = max(1, int(warmup * total_steps))
    return lambda step: (
        (step + 1) / top if step < top else max(0.0, (total_steps - step) / max(1, total_steps - top))
    )


def train_minilm(
    cfg: TrainConfig,
    train: TextClassificationData,
    test: TextClassificationData,
    device: torch.device,
    log: Any,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """AdamW, linear warm-up and decay, bf16 autocast where it pays, batches of similar length."""
    from dlkit.pretrained_text import load_text_encoder

    encoder = load_text_encoder(download=False)
    print(f"encoder: {encoder.source}")
    featurizer = BertFeaturizer(encoder.tokenizer, cfg.max_len)
    start = time.perf_counter()
    x_train, x_test = featurizer.id_lists(train.texts), featurizer.id_lists(test.texts)
    print(f"tokenized {len(x_train) + len(x_test):,} reviews in {time.perf_counter() - start:.1f} s")
    encoder.model.pooler = None  # its [CLS] pooler is unused: we mean-pool (and it would not train)
    # A float16 copy of the encoder trains with float32 master weights; autocast does the bf16 maths.
    model = MiniLMClassifier(encoder.model.float(), encoder.hidden_size).to(device)
    batch_size, num_epochs = recipe(cfg, "batch_size"), recipe(cfg, "num_epochs")
    steps = num_epochs * math.ceil(len(x_train) / batch_size)
    matrices = [p for p in model.parameters() if p.ndim >= 2]  # biases and LayerNorms do not decay
    others = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": matrices, "weight_decay": recipe(cfg, "weight_decay")},
        {"params": others, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=recipe(cfg, "lr"), fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(steps, cfg.warmup))
    amp_dtype = resolve_amp_dtype(cfg.amp, device)
    y_train = train.labels.to(device)
    for epoch in range(1, num_epochs + 1):
        model.train()
        start, total = time.perf_counter(), torch.zeros((), device=device)
        batches = length_batches([len(x) for x in x_train], batch_size, shuffle=True, seed=cfg.seed + epoch)
        for idx in progress(batches, desc=f"epoch {epoch}"):
            ids = pad_batch([x_train[i] for i in idx])[0].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(ids), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(idx)
        seconds = time.perf_counter() - start
        print(f"epoch {epoch}: {len(x_train) / seconds:,.0f} reviews/s training on {describe_device(device)}")
        log(epoch, total.item() / len(x_train), minilm_scores(model, x_test, device, cfg.amp), seconds)
    kwargs = {"encoder_config": encoder.model.config.to_dict(), "hidden_size": encoder.hidden_size}
    for key in ("torch_dtype", "dtype"):  # the weights are float32 now, whatever the copy loaded was
        if key in kwargs["encoder_config"]:
            kwargs["encoder_config"][key] = "float32"
    return model.eval(), featurizer, kwargs


TRAINERS = {"nbsvm": train_nbsvm, "baseline": train_baseline, "minilm": train_minilm}


# --- The run folder ----------------------------------------------------------------------------------


def load_trained(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The trained model of a run folder (eval mode, on ``device``), its featurizer and model_info.json."""
    run_dir = Path(run_dir)
    if not (run_dir / "model_info.json").exists() or not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished run folder: no model_info.json or checkpoint.pt"
        )
    info = json.loads((run_dir / "model_info.json").read_text())
    model = build_model(info["model"], **info["model_kwargs"])
    load_checkpoint(run_dir / "checkpoint.pt", model=model, restore_rng=False)
    featurizer = load_featurizer(info["model"], run_dir, info)
    return model.to(device).eval(), featurizer, info


def save_plots(rows: list[dict[str, float]], run_dir: Path) -> None:
    loss = {"train loss": [r["train_loss"] for r in rows], "test loss": [r["test_loss"] for r in rows]}
    save_figure(
        plot_curves(loss, title="loss per epoch", xlabel="epoch", ylabel="loss"), run_dir / "loss.png"
    )
    acc = {"test accuracy": [r["test_acc"] for r in rows]}
    save_figure(
        plot_curves(acc, title="accuracy per epoch", xlabel="epoch", ylabel="accuracy"),
        run_dir / "accuracy.png",
    )


def model_info(
    cfg: TrainConfig, kwargs: dict[str, Any], featurizer: Any, data: str, metrics: dict
) -> dict[str, Any]:
    """What export, predict and serve need to rebuild the model and feed it text."""
    preprocessing: dict[str, Any] = {"featurizer": featurizer.kind, "tokenize": "dlkit.text.tokenize"}
    if cfg.model == "minilm":
        preprocessing = {
            "featurizer": featurizer.kind,
            "max_len": cfg.max_len,
            "clean": "dlkit.text.clean_text",
        }
    else:
        preprocessing["ngram"] = featurizer.table.ngram
    return {
        "model": cfg.model,
        "model_kwargs": kwargs,
        "num_classes": 2,
        "classes": ["neg", "pos"],
        "preprocessing": preprocessing,
        "dataset": data,
        "dataset_name": cfg.dataset,
        "metrics": metrics,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train per the flags in ``argv``; returns model_info (with its final metrics)."""
    from projects.sentiment_analyzer.evaluate import report_and_plots

    cfg = parse_config(TrainConfig, argv, quick=QUICK)
    if cfg.model not in TRAINERS:
        raise SystemExit(f"unknown --model {cfg.model!r}: choose one of {', '.join(TRAINERS)}")
    run_dir = run_dir_of(cfg)
    seed_everything(cfg.seed)
    device = get_device(cfg.device) if cfg.model != "baseline" else torch.device("cpu")
    try:
        train, test = load_splits(
            cfg.dataset, train_subset=cfg.train_subset, test_subset=cfg.test_subset, seed=cfg.seed
        )
    except DatasetNotFoundError as e:
        raise SystemExit(f"{e}\n(--quick or --dataset synthetic runs without it, on made-up reviews)") from e
    print(
        f"{train.source}: {len(train):,} train, {len(test):,} test reviews; "
        f"{cfg.model} on {describe_device(device)}"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.json")
    rows: list[dict[str, float]] = []
    last_z: list[torch.Tensor] = []  # the test scores after the last epoch
    logger = CSVLogger(run_dir / "metrics.csv", append=False)

    def log(epoch: int, train_loss: float, z_test: torch.Tensor, seconds: float) -> None:
        test_loss = F.binary_cross_entropy_with_logits(z_test, test.labels.float()).item()
        acc = ((z_test > 0).long() == test.labels).double().mean().item()
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_acc": acc,
            "seconds": seconds,
        }
        rows.append(row)
        last_z[:] = [z_test]
        logger.log(row)
        print(f"epoch {epoch}: train loss {train_loss:.4f}, test loss {test_loss:.4f}, test acc {acc:.4f}")

    start, cpu_start = time.perf_counter(), time.process_time()
    model, featurizer, kwargs = TRAINERS[cfg.model](cfg, train, test, device, log)
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    save_checkpoint(run_dir / "checkpoint.pt", model=model, epoch=len(rows))
    featurizer.save(run_dir)
    save_plots(rows, run_dir)
    metrics = report_and_plots(last_z[0], test.labels, run_dir, title=f"{cfg.model} on {cfg.dataset} test")
    metrics.update(train_seconds=round(train_seconds, 1), train_cpu_seconds=round(train_cpu, 1))
    metrics.update(num_train=len(train), num_test=len(test), num_epochs=len(rows))
    data = (
        "IMDB Large Movie Review Dataset"
        if cfg.dataset == "imdb"
        else "synthetic reviews (made up, not real)"
    )
    info = model_info(cfg, kwargs, featurizer, data, metrics)
    (run_dir / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"{cfg.model} {cfg.dataset} test accuracy {metrics['acc']:.4f}, F1 {metrics['f1']:.4f}, "
        f"ECE {metrics['ece']:.4f} ({len(test):,} reviews); trained in {train_seconds:.1f} s "
        f"({train_cpu:.1f} s of CPU); {run_dir}"
    )
    return info


if __name__ == "__main__":
    main()
