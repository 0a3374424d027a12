"""What a run trains on, and how its rows are split.

Sources (``--data``):

- ``creditcard``: ULB's credit-card fraud data (``dlkit.tabular.load_creditcard``: Kaggle's
  creditcard.csv on the data search path, or OpenML's copy), split in time order: train on the first
  70% of the two days, validate on the next 10%, test on the last 20%. ``Time`` orders the rows and
  is not a feature (the test rows' times lie beyond every training time); ``Amount`` is log-scaled.
- ``file``: a CSV or Parquet file of your own (``--data-file``) with a 0/1 label column
  (``--label-column``; none: unsupervised models only), time-ordered by ``--time-column`` or by row.
- any of the 15 ODDS/ADBench anomaly sets (``dlkit.data.ANOMALY_SETS``): a stratified random split,
  or ``--split all`` (fit and score every row, the protocol of ADBench's unsupervised tables).
- ``synthetic``: generated transactions shaped like the credit-card data, for ``--quick`` and tests
  only (every run and release that used them says SYNTHETIC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dlkit.data import ANOMALY_SETS, load_dataset
from dlkit.errors import UserError
from dlkit.tabular import find_creditcard, load_creditcard, read_table, synthetic_transactions, time_split

__all__ = ["SOURCES", "FraudData", "Split", "load_fraud_data", "log_columns_of", "split_rows"]

SOURCES = ("creditcard", "file", "synthetic", *ANOMALY_SETS)
SPLITS = ("auto", "time", "random", "all")


@dataclass
class FraudData:
    """Rows ``x`` float32 (N, F) of the ``features`` in order, labels ``y`` int64 (N,) (1 = fraud or
    anomaly; all 0 when ``labelled`` is False), and ``order`` (N,) to sort them in time (None: the
    rows are in time order, or time does not apply). ``name`` says what the data is without a path;
    ``kind`` is the ``--data`` value it was loaded as (``synthetic`` where quick mode fell back to it)."""

    x: torch.Tensor
    y: torch.Tensor
    features: list[str]
    name: str
    source: str
    labelled: bool = True
    order: np.ndarray | None = None
    time_ordered: bool = False
    skipped: list[str] = field(default_factory=list)
    kind: str = ""

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Split:
    """Row indices of the three parts, and how they were made."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    how: str

    def describe(self, y: torch.Tensor) -> str:
        y = y.numpy()
        parts = [
            f"{k} {len(v):,} ({int(y[v].sum()):,} positive)"
            for k, v in (("train", self.train), ("val", self.val), ("test", self.test))
        ]
        return f"{self.how}: " + ", ".join(parts)


def _without(x: torch.Tensor, features: list[str], drop: set[str]) -> tuple[torch.Tensor, list[str]]:
    keep = [i for i, f in enumerate(features) if f not in drop]
    return x[:, keep], [features[i] for i in keep]


def load_fraud_data(
    source: str,
    *,
    quick: bool = False,
    data_file: str = "",
    label_column: str = "Class",
    time_column: str = "",
    drop: tuple[str, ...] = (),
) -> FraudData:
    """The rows of ``source`` (see the module's docstring). In quick mode the credit-card data is used
    only when it is on this machine; otherwise the synthetic transactions, and the run says so."""
    if source == "creditcard" and quick and find_creditcard() is None:
        print(
            "quick mode: the credit-card data is not on this machine, so this run uses SYNTHETIC transactions"
        )
        source = "synthetic"
    if source in ("creditcard", "synthetic"):
        data = (
            load_creditcard() if source == "creditcard" else synthetic_transactions(6000 if quick else 50_000)
        )
        name = "the credit-card fraud data (ULB)" if source == "creditcard" else data.source
        time = data.x[:, data.features.index("Time")].numpy()
        x, features = _without(data.x, data.features, {"Time", *drop})
        return FraudData(x, data.y, features, name, data.source, order=time, time_ordered=True, kind=source)
    if source == "file":
        if not data_file:
            raise UserError("--data file needs --data-file PATH (a CSV or Parquet file)")
        table = read_table(data_file, label_column or None, drop=drop, name=f"the file {data_file}")
        if table.bad:
            print(table.describe_bad())
        data = table.data
        order = None
        if time_column:
            if time_column not in data.features:
                raise UserError(f"--time-column {time_column!r} is not a column of {data_file}")
            order = data.x[:, data.features.index(time_column)].numpy()
        x, features = _without(data.x, data.features, {time_column} if time_column else set())
        name = f"the file {data_file.rsplit('/', 1)[-1]}"
        skipped = [str(b) for b in table.bad]
        return FraudData(
            x, data.y, features, name, data.source, table.labelled, order, True, skipped, kind="file"
        )
    if source in ANOMALY_SETS:
        data = load_dataset(source, "all")
        features = data.features or [f"x{i}" for i in range(data.x.shape[1])]
        x, features = _without(data.x, features, set(drop))
        name = data.source.split(" from ")[0]
        return FraudData(x, data.y, features, name, data.source, kind=source)
    raise UserError(
        f"unknown --data {source!r}: one of creditcard, file, synthetic or {', '.join(ANOMALY_SETS)}"
    )


def log_columns_of(features: list[str], requested: tuple[str, ...]) -> list[int]:
    """The indices of the columns to log-scale: ``requested`` (("auto",): "Amount" where there is one)."""
    if requested == ("auto",):
        requested = tuple(f for f in features if f.lower() == "amount")
    missing = [c for c in requested if c not in features]
    if missing:
        raise UserError(
            f"--log-columns {', '.join(missing)}: no such feature (features: {', '.join(features)})"
        )
    return [features.index(c) for c in requested]


def _stratified(y: np.ndarray, test_fraction: float, val_fraction: float, seed: int) -> Split:
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    stratify = y if y.sum() >= 2 else None
    rest, test = train_test_split(rows, test_size=test_fraction, stratify=stratify, random_state=seed)
    val_share = val_fraction / (1 - test_fraction)
    stratify = y[rest] if stratify is not None else None
    train, val = train_test_split(rest, test_size=val_share, stratify=stratify, random_state=seed)
    return Split(np.sort(train), np.sort(val), np.sort(test), "stratified random split")


def split_rows(
    data: FraudData,
    how: str = "auto",
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Train/val/test rows: ``time`` (the first part trains, the last tests), ``random`` (stratified),
    ``all`` (every row in every part: fit and score all rows, for unsupervised detectors; the validation
    rows are a random tenth, used without labels). ``auto``: time for data in time order, else random."""
    if how == "auto":
        how = "time" if data.time_ordered else "random"
    if how == "time":
        s = time_split(len(data), data.order, test_fraction=test_fraction, val_fraction=val_fraction)
        return Split(s.train, s.val, s.test, "time-ordered split (train on the first part, test on the last)")
    if how == "random":
        return _stratified(data.y.numpy(), test_fraction, val_fraction, seed)
    if how == "all":
        rows = np.arange(len(data))
        val = np.sort(np.random.default_rng(seed).permutation(len(data))[: max(1, len(data) // 10)])
        return Split(rows, val, rows, "all rows (fit and scored on every row; labels never used in training)")
    raise UserError(f"unknown --split {how!r}: one of {', '.join(SPLITS)}")
