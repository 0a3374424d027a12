"""Score transactions with a release: a CSV or Parquet file, in chunks, into a CSV of scores and flags.

    python -m projects.fraud_detector predict --release runs/fraud_detector/creditcard-mlp/release \\
        --input transactions.csv                       # writes transactions.scores.csv
    python -m projects.fraud_detector predict --release DIR --input day.parquet --output day_scores.csv \\
        --chunk-rows 100000 --threshold 0.5 --json

The input's header names the columns; the release's features are read by name (in the release's order:
any column order works, other columns are ignored, a missing feature is an error). The file is read
``--chunk-rows`` rows at a time, so its size is not bounded by memory; a progress bar shows the rows.
A row with a missing or non-numeric field (or too many or too few fields) is reported with its line
number and skipped; every other row is scored. The output has one line per scored row: ``line`` (the
input's line number; ``row`` for Parquet), ``score`` and ``flagged`` (1 when the score is at or above
the threshold: the release's, chosen by cost on the validation rows, unless ``--threshold`` is given).
The skipped rows and their reasons go to ``<output>.skipped.txt``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlkit.config import flag, parse_config
from dlkit.errors import UserError
from dlkit.progress import progress
from dlkit.project import PredictConfig as ProjectPredictConfig
from dlkit.project import ReleasePredictor
from dlkit.runs import atomic_write
from dlkit.tabular import BadRow, iter_table, table_columns
from projects.fraud_detector.train import build_scorer

__all__ = ["FraudPredictor", "PredictConfig", "main", "score_file"]

SHOWN_BAD = 20


@dataclass
class PredictConfig(ProjectPredictConfig):
    """Score a CSV or Parquet file of transactions with a release; write scores and flags."""

    input: str = flag(
        "", help="a CSV or Parquet file of transactions; its header names the columns (required)"
    )
    output: str = flag("", help="the scores' CSV (default: <input>.scores.csv beside the input)")
    chunk_rows: int = flag(65_536, help="rows read and scored at a time", min=1)
    threshold: float | None = flag(None, help="flag rows scoring at or above this (default: the release's)")


class FraudPredictor(ReleasePredictor):
    """A release's scorer: raw features (N, F) in the release's order -> scores; what clients see."""

    @staticmethod
    def build_model(metadata: dict[str, Any]) -> torch.nn.Module:
        return build_scorer(metadata)

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"]["value"])

    @property
    def score_kind(self) -> str:
        return str(self.metadata["score"]["kind"])

    @torch.no_grad()
    def score(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Scores (N,) float64 of rows x (N, F) float32, F the release's features in order."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise UserError(f"expected rows of {len(self.features)} features, got shape {tuple(x.shape)}")
        if not len(x):
            return np.zeros(0)
        return self.model(x.to(self.device)).double().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        m = self.metadata
        return {
            **super().describe(),
            "features": self.features,
            "score": m["score"],
            "threshold": m["threshold"]["value"],
            "threshold_how": m["threshold"]["how"],
            "costs": m["costs"],
            "labelled_training": m.get("labelled"),
        }


def _count_rows(path: Path) -> int | None:
    """Data rows of a CSV (lines after the header) or Parquet file, for the progress bar."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        with path.open("rb") as f:
            return max(sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1, 0)
    except (ImportError, OSError):
        return None


def score_file(
    predictor: FraudPredictor,
    path: str | Path,
    output: str | Path,
    *,
    chunk_rows: int = 65_536,
    threshold: float | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score every good row of ``path`` into ``output`` (CSV: line, score, flagged); return a summary
    with the skipped rows. The output is written atomically: a failed run leaves no partial file."""
    path, output = Path(path), Path(output)
    threshold = predictor.threshold if threshold is None else threshold
    columns = table_columns(path)
    missing = [f for f in predictor.features if f not in columns]
    if missing:
        raise UserError(
            f"{path} lacks the feature column(s) {', '.join(missing)} that this model reads "
            f"(it needs {', '.join(predictor.features)})"
        )
    ignored = [c for c in columns if c not in predictor.features]
    where = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
    bad: list[BadRow] = []
    counts = {"rows": 0, "flagged": 0}
    started = time.perf_counter()
    total = _count_rows(path)

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as out:
            out.write(f"{where},score,flagged\n")
            bar = progress(
                iter_table(path, predictor.features, chunk_rows=chunk_rows),
                desc="scoring",
                total=None if total is None else math.ceil(total / chunk_rows),
                unit="chunk",
                disable=not show_progress,
            )
            for chunk in bar:
                bad.extend(chunk.bad)
                scores = predictor.score(chunk.x)
                flags = scores >= threshold
                counts["rows"] += len(scores)
                counts["flagged"] += int(flags.sum())
                lines = [
                    f"{n},{s:.9g},{int(f)}"
                    for n, s, f in zip(chunk.where.tolist(), scores.tolist(), flags.tolist(), strict=True)
                ]
                if lines:
                    out.write("\n".join(lines) + "\n")

    atomic_write(output, write)
    skipped = output.with_name(output.name + ".skipped.txt")
    if bad:
        atomic_write(skipped, "".join(f"{b}\n" for b in bad))
    else:
        skipped.unlink(missing_ok=True)
    return {
        "input": str(path),
        "output": str(output),
        "rows_scored": counts["rows"],
        "flagged": counts["flagged"],
        "threshold": threshold,
        "skipped": len(bad),
        "skipped_rows": [str(b) for b in bad[:SHOWN_BAD]],
        "skipped_file": str(skipped) if bad else None,
        "ignored_columns": ignored,
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(PredictConfig, argv)
    if not cfg.input:
        raise UserError("--input is required: a CSV or Parquet file of transactions")
    predictor = FraudPredictor.from_release(cfg.release, cfg.device)
    assert isinstance(predictor, FraudPredictor)
    output = cfg.output or str(Path(cfg.input).with_suffix("")) + ".scores.csv"
    summary = score_file(
        predictor,
        cfg.input,
        output,
        chunk_rows=cfg.chunk_rows,
        threshold=cfg.threshold,
        show_progress=not cfg.json,
    )
    if cfg.json:
        print(json.dumps(summary))
    else:
        for line in summary["skipped_rows"]:
            print(f"skipped {line}")
        if summary["skipped"] > SHOWN_BAD:
            print(f"... {summary['skipped'] - SHOWN_BAD:,} more skipped rows in {summary['skipped_file']}")
        if summary["ignored_columns"]:
            print(f"ignored columns (not features of this model): {', '.join(summary['ignored_columns'])}")
        print(
            f"scored {summary['rows_scored']:,} rows in {summary['seconds']:.1f} s: {summary['flagged']:,} "
            f"flagged at threshold {summary['threshold']:.4g}, {summary['skipped']:,} skipped; "
            f"scores in {summary['output']}"
        )
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
