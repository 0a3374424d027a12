"""dlkit.tabular: CSV and Parquet tables (bad rows named by line and skipped, chunks equal the whole file),
the time-ordered split, and the credit-card loader's content checks on small files made here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlkit.data import DatasetNotFoundError
from dlkit.errors import UserError
from dlkit.tabular import (
    CREDITCARD_COLUMNS,
    CreditCardSpec,
    iter_table,
    load_creditcard,
    read_table,
    synthetic_transactions,
    table_columns,
    time_split,
    write_table,
)

BAD_CSV = """a,b,label
1.5,2,0
3,,1
4,x,0
5,6,1,9
7,8,2

"9.25",10,1
nan,1,0
11,12,0
"""


@pytest.fixture(params=["pyarrow", "numpy"])
def parser(request, monkeypatch) -> str:
    """Each CSV test runs with pyarrow's parser and with NumPy's (a machine without pyarrow)."""
    if request.param == "numpy":
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
        monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    else:
        pytest.importorskip("pyarrow")
    return request.param


def test_a_csv_reads_back_what_was_written(tmp_path: Path, parser: str) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 4)).astype(np.float32), (rng.random(500) < 0.1).astype(np.int64)
    path = write_table(tmp_path / "t.csv", x, ["a", "b", "c", "d"], y, label="fraud")
    table = read_table(path, label="fraud")
    assert table.data.features == ["a", "b", "c", "d"] and table.labelled and table.bad == []
    assert torch.equal(table.data.x, torch.from_numpy(x))  # %.9g round-trips float32 exactly
    assert torch.equal(table.data.y, torch.from_numpy(y))
    assert table.where.tolist() == list(range(2, 502))  # line numbers: the header is line 1
    assert table_columns(path) == ["a", "b", "c", "d", "fraud"]


def test_bad_rows_are_named_by_line_and_skipped(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    table = read_table(path, label="label")
    assert table.data.x.tolist() == [[1.5, 2.0], [9.25, 10.0], [11.0, 12.0]]
    assert table.data.y.tolist() == [0, 1, 0]
    assert table.where.tolist() == [2, 8, 10]  # line 7 is blank
    reasons = {b.where: b.reason for b in table.bad}
    assert reasons == {
        "line 3": "b is missing",
        "line 4": "b is not a number: 'x'",
        "line 5": "4 fields, expected 3",
        "line 6": "the label is '2', not 0 or 1",
        "line 9": "a is 'nan', not a finite number",
    }
    assert "skipped 5 bad row(s)" in table.describe_bad()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_hold_the_rows_of_the_whole_file(tmp_path: Path, suffix: str, parser: str) -> None:
    if suffix == ".parquet" and parser == "numpy":
        pytest.skip("Parquet needs pyarrow")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3)).astype(np.float32)
    path = write_table(tmp_path / f"t{suffix}", x, ["p", "q", "r"])
    whole = np.concatenate([c.x for c in iter_table(path, chunk_rows=10_000)])
    chunks = list(iter_table(path, ["r", "p"], chunk_rows=37))  # another order, a subset
    assert len(chunks) == 28 and np.array_equal(whole, x)
    assert np.array_equal(np.concatenate([c.x for c in chunks]), x[:, [2, 0]])
    first = 2 if suffix == ".csv" else 1
    assert np.concatenate([c.where for c in chunks]).tolist() == list(range(first, first + 1000))


def test_parquet_bad_rows_are_named_by_row(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"a": [1.0, None, 3.0, 4.0], "b": ["1", "2", "x", "4"], "y": [0, 1, 0, 5]})
    pq.write_table(table, tmp_path / "t.parquet")
    got = read_table(tmp_path / "t.parquet", label="y")
    assert got.data.x.tolist() == [[1.0, 1.0]] and got.data.y.tolist() == [0]
    assert [str(b) for b in got.bad] == [
        "row 2: a is missing or not a finite number",
        "row 3: b is missing or not a finite number",
        "row 4: the label is 5, not 0 or 1",
    ]


def test_unusable_tables_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "t.txt").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"save it as \.csv or \.parquet"):
        read_table(tmp_path / "t.txt")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="no label column 'Class'; its columns: a, b"):
        read_table(tmp_path / "t.csv", label="Class")
    with pytest.raises(UserError, match="lacks the feature column.*'c'"):
        read_table(tmp_path / "t.csv", features=["a", "c"])
    (tmp_path / "empty.csv").write_text("a,b\nx,y\n")
    with pytest.raises(UserError, match="no good rows"):
        read_table(tmp_path / "empty.csv")


def test_time_split_trains_on_the_first_part_and_tests_on_the_last() -> None:
    rng = np.random.default_rng(0)
    times = rng.permutation(1000).astype(float)
    split = time_split(1000, times, test_fraction=0.2, val_fraction=0.1)
    assert (len(split.train), len(split.val), len(split.test)) == (700, 100, 200)
    assert (
        times[split.train].max() < times[split.val].min() <= times[split.val].max() < times[split.test].min()
    )
    assert sorted(np.r_[split.train, split.val, split.test].tolist()) == list(range(1000))
    assert time_split(10, test_fraction=0.3, val_fraction=0.2).test.tolist() == [7, 8, 9]


# --- The credit-card loader, on small files made here -------------------------------------------------


def creditcard_file(folder: Path, n: int = 300, frauds: int = 3, columns=CREDITCARD_COLUMNS) -> Path:
    data = synthetic_transactions(n, frauds / n, seed=2)
    (folder / "creditcard").mkdir(parents=True, exist_ok=True)
    x = data.x.numpy()[:, : len(columns)]
    return write_table(folder / "creditcard" / "creditcard.csv", x, columns, data.y.numpy(), label="Class")


def test_the_credit_card_loader_accepts_the_right_content(tmp_path, monkeypatch) -> None:
    creditcard_file(tmp_path)
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path))
    data = load_creditcard(download=False, spec=CreditCardSpec(rows=300, frauds=3))
    assert data.features == list(CREDITCARD_COLUMNS) and data.x.shape == (300, 30)
    assert int(data.y.sum()) == 3 and "creditcard.csv" in data.source


@pytest.mark.parametrize(
    "spec, columns, message",
    [
        (CreditCardSpec(rows=284_807, frauds=3), CREDITCARD_COLUMNS, "it has 300 rows, not 284,807"),
        (CreditCardSpec(rows=300, frauds=492), CREDITCARD_COLUMNS, "it has 3 frauds .*, not 492"),
        (CreditCardSpec(rows=300, frauds=3), CREDITCARD_COLUMNS[:-1], "columns differ: missing Amount"),
        (
            CreditCardSpec(rows=300, frauds=3),
            (*CREDITCARD_COLUMNS[:-1], "Amount_EUR"),
            "missing Amount; unexpected Amount_EUR",
        ),
    ],
)
def test_the_credit_card_loader_refuses_other_content(tmp_path, monkeypatch, spec, columns, message) -> None:
    creditcard_file(tmp_path, columns=columns)
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=message):
        load_creditcard(download=False, spec=spec)


def test_without_the_file_or_network_the_loader_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DLKIT_DATA", str(tmp_path))
    monkeypatch.setenv("DLKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError, match="downloading is turned off.*Kaggle.*OpenML"):
        load_creditcard(download=False)


def test_synthetic_transactions_look_like_the_credit_card_data() -> None:
    data = synthetic_transactions(2000, 0.01, seed=0)
    assert data.features == list(CREDITCARD_COLUMNS) and "SYNTHETIC" in data.source
    assert int(data.y.sum()) == 20 and torch.all(data.x[1:, 0] >= data.x[:-1, 0])  # in time order
