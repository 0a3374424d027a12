"""Tables of numbers from files: the transactions a user brings, and the credit-card fraud data.

    table = read_table("transactions.csv", label="Class")       # CSV or Parquet, every row checked
    table.data.x, table.data.y, table.data.features             # float32 (N, F), int64 (N,), names
    table.bad                                                   # [BadRow(where="line 17", reason=...)]
    for chunk in iter_table("big.parquet", features=names):     # the same rows, a chunk at a time
        score(chunk.x); chunk.where                             # the line (row) number of each row
    data = load_creditcard()                                    # Kaggle's creditcard.csv or OpenML 1597
    split = time_split(len(data), order=data.x[:, 0])          # train on the first part, test on the last

A row with a missing or non-numeric field, or with too many or too few fields, is reported by its line
number and skipped: one bad row never stops a file. CSV is read with pyarrow's parser where pyarrow is
installed (the ``nlp`` extra), NumPy's otherwise; the csv module then finds the bad rows of a chunk that
either refuses. Parquet needs pyarrow.

The credit-card data (ULB's 284,807 card transactions over two days, 492 frauds) has no fixed file to
check a checksum against (Kaggle's CSV and OpenML's ARFF differ byte for byte), so it is verified by
content: its columns, its number of rows and its class counts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlkit.data import DatasetNotFoundError, TabularData, cache_dir, data_search_path
from dlkit.errors import UserError

__all__ = [
    "CREDITCARD",
    "CREDITCARD_COLUMNS",
    "BadRow",
    "CreditCardSpec",
    "Table",
    "TableChunk",
    "TableError",
    "TimeSplit",
    "describe_bad",
    "find_creditcard",
    "iter_table",
    "load_creditcard",
    "read_table",
    "synthetic_transactions",
    "table_columns",
    "time_split",
    "verify_creditcard",
    "write_table",
]

MAX_BAD_SHOWN = 10


class TableError(UserError):
    """A table that cannot be used: not found, not CSV/Parquet, missing columns, no good rows."""


@dataclass
class BadRow:
    """A row that was skipped: ``where`` ("line 17" of a CSV, "row 17" of a Parquet file) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class TableChunk:
    """Consecutive good rows of a table: features ``x`` float32 (n, F) in the order asked for, labels
    ``y`` int64 (n,) (None without a label column), the line (CSV) or row (Parquet) number of each row
    in the file, and the rows of this stretch of the file that were skipped."""

    x: np.ndarray
    y: np.ndarray | None
    where: np.ndarray
    bad: list[BadRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Table:
    """A whole table read from a file: the good rows as TabularData (``y`` all 0 when ``labelled`` is
    False), where each row came from, and the rows skipped."""

    data: TabularData
    labelled: bool
    where: np.ndarray
    bad: list[BadRow]

    def describe_bad(self) -> str:
        """One line per skipped row (the first ten), or an empty string."""
        return describe_bad(self.bad)


def describe_bad(bad: Sequence[BadRow], limit: int = MAX_BAD_SHOWN) -> str:
    if not bad:
        return ""
    lines = [f"skipped {len(bad):,} bad row(s):"] + [f"  {b}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit:,} more")
    return "\n".join(lines)


# --- Reading CSV and Parquet -----------------------------------------------------------------------


def _kind(path: Path) -> str:
    if not path.is_file():
        raise TableError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise TableError(f"{path}: not a table this reads; save it as .csv or .parquet")


def _pyarrow_parquet():  # noqa: ANN202 - the pyarrow.parquet module
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise TableError(
            "reading Parquet needs pyarrow: pip install pyarrow (or the nlp extra), or save the table as CSV"
        ) from e
    return pq


def table_columns(path: str | Path) -> list[str]:
    """The column names of a CSV (its header line) or Parquet file."""
    path = Path(path)
    if _kind(path) == "parquet":
        return list(_pyarrow_parquet().ParquetFile(path).schema_arrow.names)
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if not header or not any(h.strip() for h in header):
        raise TableError(f"{path} has no header line: the first line must name the columns")
    return [h.strip() for h in header]


def _columns_of(
    path: Path, names: list[str], features: Sequence[str] | None, label: str | None, drop: Sequence[str]
) -> tuple[list[str], list[int], int | None]:
    """The feature names (in order), their column indices, and the label's index (or None)."""
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TableError(f"{path}: the column name(s) {duplicated} appear more than once")
    label_index = None
    if label:
        if label not in names:
            raise TableError(f"{path} has no label column {label!r}; its columns: {', '.join(names)}")
        label_index = names.index(label)
    if features is None:
        features = [n for n in names if n != label and n not in drop]
    missing = [f for f in features if f not in names]
    if missing:
        raise TableError(
            f"{path} lacks the feature column(s) {', '.join(map(repr, missing))} (it has {', '.join(names)})"
        )
    if not features:
        raise TableError(f"{path} has no feature columns besides the label {label!r}")
    return list(features), [names.index(f) for f in features], label_index


def _check_label(y: np.ndarray) -> np.ndarray:
    """A boolean mask of the labels that are 0 or 1."""
    return (y == 0) | (y == 1)


def _parse_row(
    fields: list[str], num_columns: int, cols: list[int], features: list[str], label_index: int | None
) -> tuple[list[float], float] | str:
    """One CSV row's features and label, or the reason it is bad."""
    if len(fields) != num_columns:
        return f"{len(fields)} fields, expected {num_columns}"
    values = []
    for i, name in zip(cols, features, strict=True):
        text = fields[i].strip()
        if not text:
            return f"{name} is missing"
        try:
            value = float(text)
        except ValueError:
            return f"{name} is not a number: {text[:40]!r}"
        if not math.isfinite(value):
            return f"{name} is {text!r}, not a finite number"
        values.append(value)
    label = 0.0
    if label_index is not None:
        text = fields[label_index].strip()
        try:
            label = float(text)
        except ValueError:
            label = math.nan
        if label not in (0.0, 1.0):
            return f"the label is {text[:40]!r}, not 0 or 1"
    return values, label


def _csv_chunks(
    path: Path, features: Sequence[str] | None, label: str | None, drop: Sequence[str], chunk_rows: int
) -> Iterator[TableChunk]:
    names = table_columns(path)
    features, cols, label_index = _columns_of(path, names, features, label, drop)
    with path.open(newline="", encoding="utf-8-sig") as f:
        f.readline()  # the header
        line_no = 1
        while True:
            raw = list(itertools.islice(f, chunk_rows))
            if not raw:
                return
            numbered = [(line_no + 1 + i, text) for i, text in enumerate(raw) if text.strip()]
            line_no += len(raw)
            yield _csv_chunk(numbered, names, cols, features, label_index)


def _parse_clean(lines: list[str], names: list[str], usecols: list[int]) -> np.ndarray | None:
    """The ``usecols`` of CSV lines as float64 (n, len(usecols)) when every line has every field and
    each used field is a number, else None. pyarrow's parser where it is installed (several times
    faster), NumPy's otherwise."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        pa = None
    if pa is not None:
        used = [names[i] for i in usecols]
        try:
            table = pa_csv.read_csv(
                io.BytesIO("".join(t if t.endswith("\n") else t + "\n" for t in lines).encode()),
                read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types={c: pa.float64() for c in used}, include_columns=used
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if table.num_rows != len(lines) or any(table.column(c).null_count for c in used):
            return None
        return np.column_stack([table.column(c).to_numpy() for c in used])
    if any(text.count(",") != len(names) - 1 for text in lines if '"' not in text):
        return None  # a row with another number of fields
    try:
        return np.loadtxt(
            lines, delimiter=",", dtype=np.float64, usecols=usecols, ndmin=2, comments=None, quotechar='"'
        )
    except ValueError:
        return None


def _csv_chunk(
    numbered: list[tuple[int, str]],
    names: list[str],
    cols: list[int],
    features: list[str],
    label_index: int | None,
) -> TableChunk:
    """The good rows of some numbered lines: a clean chunk is parsed at once; a chunk with a bad row is
    parsed row by row (the csv module) to name each bad one."""
    lines = [text for _, text in numbered]
    where = np.array([n for n, _ in numbered], dtype=np.int64)
    usecols = cols + ([label_index] if label_index is not None else [])
    table = _parse_clean(lines, names, usecols) if lines else None
    if table is not None and len(table) == len(lines):
        x = table[:, : len(cols)]
        y = table[:, len(cols)] if label_index is not None else None
        if np.isfinite(x).all() and (y is None or _check_label(y).all()):
            return TableChunk(x.astype(np.float32), None if y is None else y.astype(np.int64), where)
    num_columns = len(names)
    rows, labels, kept, bad = [], [], [], []
    for (n, _), fields in zip(numbered, csv.reader(lines), strict=True):
        parsed = _parse_row(fields, num_columns, cols, features, label_index)
        if isinstance(parsed, str):
            bad.append(BadRow(f"line {n}", parsed))
        else:
            rows.append(parsed[0])
            labels.append(parsed[1])
            kept.append(n)
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(cols))
    y = np.asarray(labels, dtype=np.int64) if label_index is not None else None
    return TableChunk(x, y, np.asarray(kept, dtype=np.int64), bad)


def _parquet_column(column, name: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - pyarrow array
    """A Parquet column as float64 and a mask of its bad entries (null, not a number, not finite)."""
    import pyarrow as pa

    if (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_boolean(column.type)
    ):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        values = np.where(np.asarray(column.is_null()), np.nan, values)
        return values, ~np.isfinite(values)
    values = np.full(len(column), np.nan)
    for i, item in enumerate(column.to_pylist()):
        with contextlib.suppress(TypeError, ValueError):
            values[i] = float(item)
    return values, ~np.isfinite(values)


def _parquet_chunks(
    path: Path, features: Sequence[str] | None, label: str | None, drop: Sequence[str], chunk_rows: int
) -> Iterator[TableChunk]:
    pq = _pyarrow_parquet()
    file = pq.ParquetFile(path)
    names = list(file.schema_arrow.names)
    features, _, label_index = _columns_of(path, names, features, label, drop)
    wanted = features + ([label] if label_index is not None and label else [])
    start = 0
    for batch in file.iter_batches(batch_size=chunk_rows, columns=wanted):
        n = batch.num_rows
        where = np.arange(start + 1, start + n + 1, dtype=np.int64)
        start += n
        x = np.empty((n, len(features)), dtype=np.float64)
        reasons: list[str | None] = [None] * n
        for j, name in enumerate(features):
            x[:, j], invalid = _parquet_column(batch.column(name), name)
            for i in np.flatnonzero(invalid):
                reasons[i] = reasons[i] or f"{name} is missing or not a finite number"
        y = None
        if label_index is not None and label:
            y, invalid = _parquet_column(batch.column(label), label)
            for i in np.flatnonzero(invalid | ~_check_label(np.nan_to_num(y, nan=-1.0))):
                reasons[i] = reasons[i] or f"the label is {batch.column(label)[i].as_py()!r}, not 0 or 1"
        good = np.array([r is None for r in reasons], dtype=bool)
        bad = [BadRow(f"row {where[i]}", r) for i, r in enumerate(reasons) if r is not None]
        yield TableChunk(
            x[good].astype(np.float32), None if y is None else y[good].astype(np.int64), where[good], bad
        )


def iter_table(
    path: str | Path,
    features: Sequence[str] | None = None,
    *,
    label: str | None = None,
    drop: Sequence[str] = (),
    chunk_rows: int = 65_536,
) -> Iterator[TableChunk]:
    """The rows of a CSV or Parquet file, ``chunk_rows`` lines at a time (fewer where rows are bad).

    ``features``: the columns to read, in this order (None: every column but ``label`` and ``drop``);
    other columns are ignored. With ``label``, that column must hold 0 or 1 in every good row. A CSV
    holds one row per line, with a header line that names the columns.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
    path = Path(path)
    reader = _parquet_chunks if _kind(path) == "parquet" else _csv_chunks
    yield from reader(path, features, label, drop, chunk_rows)


def read_table(
    path: str | Path,
    label: str | None = None,
    *,
    features: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    name: str = "",
) -> Table:
    """A whole CSV or Parquet file as a :class:`Table` (see :func:`iter_table`); a TableError when no
    good row is left. ``name`` labels the data (default: the file's name)."""
    path = Path(path)
    chunks = list(iter_table(path, features, label=label, drop=drop))
    bad = [b for c in chunks for b in c.bad]
    names = _columns_of(path, table_columns(path), features, label, drop)[0]
    x = np.concatenate([c.x for c in chunks]) if chunks else np.zeros((0, len(names)), np.float32)
    if len(x) == 0:
        raise TableError(f"{path} has no good rows" + (f"\n{describe_bad(bad)}" if bad else ""))
    y = np.concatenate([c.y for c in chunks]) if label else np.zeros(len(x), np.int64)  # type: ignore[misc]
    where = np.concatenate([c.where for c in chunks])
    what = name or path.name
    source = f"{what} ({len(x):,} rows" + (f", {int(y.sum()):,} labelled 1" if label else "") + ")"
    data = TabularData(torch.from_numpy(x), torch.from_numpy(y), source, list(names))
    return Table(data, bool(label), where, bad)


def write_table(
    path: str | Path, x: np.ndarray, columns: Sequence[str], y: np.ndarray | None = None, label: str = "Class"
) -> Path:
    """Write rows as a CSV (``%.9g``, a float32 read back is the same number) or Parquet file."""
    path = Path(path)
    x = np.asarray(x, dtype=np.float64)
    table = x if y is None else np.column_stack([x, np.asarray(y, dtype=np.float64)])
    header = list(columns) + ([label] if y is not None else [])
    if _suffix_kind(path) == "parquet":
        import pyarrow as pa

        arrays = [pa.array(table[:, j]) for j in range(table.shape[1])]
        if y is not None:
            arrays[-1] = pa.array(np.asarray(y, dtype=np.int64))
        _pyarrow_parquet().write_table(pa.table(arrays, names=header), path)
        return path
    fmt = ["%.9g"] * len(columns) + (["%d"] if y is not None else [])
    np.savetxt(path, table, delimiter=",", header=",".join(header), comments="", fmt=fmt)
    return path


def _suffix_kind(path: Path) -> str:
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"


# --- A time-ordered split ---------------------------------------------------------------------------


@dataclass
class TimeSplit:
    """Row indices in time order: ``train`` the earliest rows, then ``val``, then ``test`` the latest."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def describe(self, y: np.ndarray | torch.Tensor) -> str:
        y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        parts = [
            f"{name} {len(idx):,} ({int(y[idx].sum()):,} positive)"
            for name, idx in (("train", self.train), ("val", self.val), ("test", self.test))
        ]
        return ", ".join(parts)


def time_split(
    n: int,
    order: np.ndarray | torch.Tensor | None = None,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> TimeSplit:
    """Train on the first part, test on the last: rows sorted by ``order`` (e.g. the Time column; None:
    file order, stable for ties), the last ``test_fraction`` tested, the ``val_fraction`` before them
    validated (model selection), the rest trained on."""
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(f"bad fractions: test {test_fraction}, val {val_fraction}")
    if order is None:
        rows = np.arange(n)
    else:
        order = order.numpy() if isinstance(order, torch.Tensor) else np.asarray(order)
        if len(order) != n:
            raise ValueError(f"order has {len(order)} values for {n} rows")
        rows = np.argsort(order, kind="stable")
    num_test = int(round(test_fraction * n))
    num_val = int(round(val_fraction * n))
    train_end = n - num_test - num_val
    return TimeSplit(rows[:train_end], rows[train_end : n - num_test], rows[n - num_test :])


# --- The credit-card fraud data -----------------------------------------------------------------------

CREDITCARD_COLUMNS = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
OPENML_CREDITCARD_ID = 1597
CREDITCARD_FILES = ("creditcard.csv", "creditcard.parquet")
CREDITCARD_FOLDERS = ("creditcard", "creditcardfraud", "creditcard_fraud", ".")


@dataclass(frozen=True)
class CreditCardSpec:
    """What the credit-card fraud data holds (Dal Pozzolo et al. 2015; ULB's Kaggle release): the
    loader checks a file against this, since no checksum fits both Kaggle's CSV and OpenML's copy."""

    rows: int = 284_807
    frauds: int = 492
    features: tuple[str, ...] = CREDITCARD_COLUMNS
    label: str = "Class"


CREDITCARD = CreditCardSpec()


def verify_creditcard(data: TabularData, spec: CreditCardSpec = CREDITCARD, where: str = "") -> None:
    """A DatasetNotFoundError naming what differs (columns, rows, class counts) unless ``data`` is the
    credit-card fraud data."""
    where = where or data.source
    problems = []
    missing = [c for c in spec.features if c not in data.features]
    extra = [c for c in data.features if c not in spec.features]
    if missing or extra:
        problems.append(
            "its columns differ: "
            + "; ".join(
                f"{what} {', '.join(cols[:8])}{' ...' if len(cols) > 8 else ''}"
                for what, cols in (("missing", missing), ("unexpected", extra))
                if cols
            )
        )
    if len(data) != spec.rows:
        problems.append(f"it has {len(data):,} rows, not {spec.rows:,}")
    frauds = int(data.y.sum())
    if frauds != spec.frauds:
        problems.append(f"it has {frauds:,} frauds (Class 1), not {spec.frauds:,}")
    if problems:
        raise DatasetNotFoundError(
            f"{where} is not the credit-card fraud data (ULB): {'; '.join(problems)}. Use Kaggle's "
            "creditcard.csv (mlg-ulb/creditcardfraud) unchanged, or delete it to download OpenML's copy"
        )


def find_creditcard() -> Path | None:
    """The first creditcard.csv (or .parquet) on the data search path, in a folder named creditcard,
    creditcardfraud, creditcard_fraud or in the root itself."""
    for root in data_search_path():
        for folder in CREDITCARD_FOLDERS:
            for name in CREDITCARD_FILES:
                if (root / folder / name).is_file():
                    return root / folder / name
    return None


def _order_columns(data: TabularData, spec: CreditCardSpec) -> TabularData:
    """The spec's column order (a file may order them otherwise; names compared without case)."""
    lower = {f.lower(): i for i, f in enumerate(data.features)}
    if not all(f.lower() in lower for f in spec.features) or len(lower) != len(spec.features):
        return data  # verify_creditcard says what differs
    idx = [lower[f.lower()] for f in spec.features]
    return TabularData(data.x[:, idx], data.y, data.source, list(spec.features))


def _fetch_openml_creditcard(spec: CreditCardSpec) -> TabularData:
    """OpenML's copy (data id 1597) through scikit-learn's client, cached under the dlkit cache."""
    from sklearn.datasets import fetch_openml

    home = cache_dir() / "openml"
    bunch = fetch_openml(
        data_id=OPENML_CREDITCARD_ID, data_home=str(home), as_frame=False, parser="liac-arff"
    )
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target).astype(np.float64).astype(np.int64)
    source = f"the credit-card fraud data from OpenML (data id {OPENML_CREDITCARD_ID}), cached in {home}"
    return TabularData(torch.from_numpy(x), torch.from_numpy(y), source, list(bunch.feature_names))


def load_creditcard(download: bool = True, spec: CreditCardSpec = CREDITCARD) -> TabularData:
    """The credit-card fraud data: ``creditcard.csv`` (Kaggle) found on the data search path
    (``DLKIT_DATA``), else OpenML's copy (downloaded once into the cache), verified by content.

    Rows keep the file's order (by Time). A file that is not the data (other columns, another number
    of rows or frauds) is refused with what differs; bad rows are refused too (the data has none).
    """
    path = find_creditcard()
    if path is not None:
        table = read_table(path, label=spec.label, name="the credit-card fraud data")
        if table.bad:
            raise DatasetNotFoundError(
                f"{path} is not the credit-card fraud data unchanged: {table.describe_bad()}"
            )
        data = _order_columns(table.data, spec)
        data.source = f"the credit-card fraud data (ULB) from {path}"
        verify_creditcard(data, spec, str(path))
        return data
    if not download:
        reason = "downloading is turned off"
    else:
        try:
            data = _order_columns(_fetch_openml_creditcard(spec), spec)
            verify_creditcard(data, spec, "OpenML's copy")
            return data
        except (OSError, ValueError) as e:  # no network (URLError is an OSError), a changed file format
            reason = f"downloading OpenML's copy failed: {str(e)[:200]}"
    places = ", ".join(str(root / folder) for root in data_search_path() for folder in CREDITCARD_FOLDERS)
    raise DatasetNotFoundError(
        f"the credit-card fraud data was not found and {reason}. Looked for {' or '.join(CREDITCARD_FILES)} "
        f"in: {places}. Download creditcard.csv from Kaggle (mlg-ulb/creditcardfraud) into a folder on "
        f"DLKIT_DATA (e.g. $DLKIT_DATA/creditcard/creditcard.csv), or let it download OpenML's copy "
        f"(data id {OPENML_CREDITCARD_ID}) with the network on. --quick runs offline without it."
    )


# --- Synthetic transactions: unit tests and the offline quick path -----------------------------------


def synthetic_transactions(n: int = 6000, fraud_rate: float = 0.01, seed: int = 0) -> TabularData:
    """SYNTHETIC data shaped like the credit-card data (Time, V1-V28, Amount; Class 1 = fraud): for unit
    tests and ``--quick`` only, never for a reported number.

    Normal rows are correlated Gaussians; a fraud is shifted along a few of the V features and has a
    larger amount, so a detector can find most of them. Time grows over two days.
    """
    rng = np.random.default_rng(seed)
    num_v = 28
    # The same "bank" for every seed: the seed draws other transactions, not another distribution.
    mixing = np.random.default_rng(1597).normal(size=(num_v, num_v)) / math.sqrt(num_v)
    v = rng.normal(size=(n, num_v)) @ mixing
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, size=max(2, int(round(fraud_rate * n))), replace=False)] = 1
    shift = np.zeros(num_v)
    shift[[2, 9, 13, 16]] = [-3.0, -2.5, -3.5, -3.0]
    v[y == 1] += shift + 0.5 * rng.normal(size=(int(y.sum()), num_v))
    amount = np.exp(rng.normal(3.0, 1.2, size=n)) + np.where(y == 1, np.exp(rng.normal(5.0, 0.8, size=n)), 0)
    time = np.sort(rng.uniform(0, 172_800, size=n))
    x = np.column_stack([time, v, np.round(amount, 2)]).astype(np.float32)
    source = f"SYNTHETIC transactions ({n:,} rows, {int(y.sum())} frauds; generated, not real data)"
    return TabularData(torch.from_numpy(x), torch.from_numpy(y), source, list(CREDITCARD_COLUMNS))
