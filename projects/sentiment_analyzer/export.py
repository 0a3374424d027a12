"""Turn a training run into a release folder that predict, serve and other programs load.

    python -m projects.sentiment_analyzer export --run-dir runs/sentiment_analyzer/imdb-nbsvm

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle; the baseline's idf and coefficients
  too) and everything needed to use them (architecture, classes, preprocessing, metrics; dlkit.export);
- ``vocab.json`` (nbsvm, baseline: the n-gram table, JSON) or ``tokenizer/`` (minilm): how text becomes
  the model's input, exactly as in training; their sha256 is in model.json;
- ``model.onnx``: the graph for ONNX Runtime, any batch size and text length. Its inputs are what the
  featurizer makes: ``ids`` (B, T) int64 (and ``counts`` (B, T) float32 for the baseline); its output
  ``logits`` (B, 2).

Before the release is written, ONNX Runtime must agree with PyTorch on real test reviews (the run's
dataset when found locally, else synthetic ones, and it says which) within ``--atol``/``--rtol``;
otherwise the export fails and nothing is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlkit.config import parse_config
from dlkit.data import DatasetNotFoundError, file_digest, locate
from dlkit.export import (
    ParityError,
    check_onnx_parity,
    export_onnx,
    read_metadata,
    save_release,
    staged_release,
)
from projects.sentiment_analyzer.data import load_splits, synthetic_reviews
from projects.sentiment_analyzer.train import length_batches, load_trained

__all__ = ["ExportConfig", "main", "release_from_run"]

INPUT_NAMES = {"nbsvm": ["ids"], "baseline": ["ids", "counts"], "minilm": ["ids"]}


@dataclass
class ExportConfig:
    """Export a run folder (written by `train`) as a release: safetensors + JSON, vocabulary, ONNX."""

    run_dir: str = field(default="", metadata={"help": "the run folder train wrote (required)"})
    out: str = field(default="", metadata={"help": "the release folder (default: <run-dir>/release)"})
    parity_texts: int = field(default=256, metadata={"help": "test reviews ONNX is checked on"})
    atol: float = field(default=1e-4, metadata={"help": "minilm: 1e-3 is reasonable"})
    rtol: float = 1e-4
    graphs: bool = field(default=True, metadata={"help": "--no-graphs: no ONNX file"})


def parity_texts(info: dict[str, Any], n: int) -> tuple[list[str], str]:
    """Up to ``n`` test reviews of the run's dataset when found locally (never downloaded), else synthetic."""
    name = info["dataset_name"]
    if name == "imdb" and locate("imdb") is not None:
        try:
            test = load_splits("imdb", test_subset=n)[1]
            return test.texts, f"{len(test)} IMDB test reviews"
        except DatasetNotFoundError:
            pass
    texts = synthetic_reviews(n, seed=1).texts
    why = "" if name == "synthetic" else f" ({name} not found locally)"
    return texts, f"{len(texts)} synthetic reviews{why}"


def _digests(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each file named, or of each file under each folder named (relative paths)."""
    digests = {}
    for name in names:
        path = folder / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digests.update({str(p.relative_to(folder)): file_digest(p) for p in files})
    return digests


def release_from_run(
    run_dir: str | Path, out_dir: str | Path | None = None, *, num_texts: int = 256, atol: float = 1e-4,
    rtol: float = 1e-4, graphs: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Write the release of ``run_dir`` to ``out_dir`` (default ``run_dir/release``); return model.json."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "release"
    model, featurizer, info = load_trained(run_dir)
    config = run_dir / "config.json"
    metadata: dict[str, Any] = {
        "architecture": {"name": info["model"], "kwargs": info["model_kwargs"]},
        **{
            k: info[k]
            for k in ("num_classes", "classes", "preprocessing", "dataset", "dataset_name", "metrics")
        },
        "trained_from": {
            "run_dir": str(run_dir),
            "config": json.loads(config.read_text()) if config.exists() else None,
        },
    }
    with staged_release(out_dir) as staging:
        metadata["featurizer_files"] = _digests(staging, featurizer.save(staging))
        if graphs:
            names = INPUT_NAMES[info["model"]]
            texts, source = parity_texts(info, num_texts)
            batches = [
                featurizer.encode([texts[i] for i in idx])
                for idx in length_batches([len(t) for t in texts], 64, shuffle=False)
            ]
            example = featurizer.encode(texts[:3])
            onnx = staging / "model.onnx"  # the batch and every input's length free:
            export_onnx(model, example, onnx, dynamic_length=True, input_name=names, output_name="logits")
            diff = check_onnx_parity(model, onnx, batches, atol=atol, rtol=rtol)
            metadata["files"] = {"onnx": "model.onnx"}
            metadata["onnx"] = {"inputs": names, "output": "logits", "dynamic": ["batch", "length"]}
            metadata["parity"] = {"texts": source, "atol": atol, "rtol": rtol, "onnx_max_abs_diff": diff}
        save_release(model, metadata, staging)
    return read_metadata(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Export ``--run-dir``; exit status 1 when ONNX Runtime disagrees with PyTorch."""
    cfg = parse_config(ExportConfig, argv)
    if not cfg.run_dir:
        raise SystemExit(
            "export needs --run-dir (a folder written by `python -m projects.sentiment_analyzer train`)"
        )
    out = cfg.out or str(Path(cfg.run_dir) / "release")
    try:
        meta = release_from_run(
            cfg.run_dir, out, num_texts=cfg.parity_texts, atol=cfg.atol, rtol=cfg.rtol, graphs=cfg.graphs
        )
    except (ParityError, FileNotFoundError, FileExistsError) as e:
        print(f"export failed, nothing written: {e}", file=sys.stderr)
        return 1
    files = sorted(p.name for p in Path(out).iterdir())
    print(f"release of {meta['architecture']['name']} ({meta['dataset']}) in {out}: {', '.join(files)}")
    if "parity" in meta:
        p = meta["parity"]
        print(
            f"ONNX Runtime vs PyTorch on {p['texts']}: max abs diff {p['onnx_max_abs_diff']:.2e} "
            f"(atol {p['atol']:g}, rtol {p['rtol']:g})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
