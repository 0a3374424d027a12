"""Turn a training run into a release folder that predict, serve and other programs load.

    python -m projects.sentiment_analyzer export --run-dir runs/sentiment_analyzer/imdb-nbsvm

The release (default ``<run-dir>/release/``) holds:

- ``model.safetensors`` and ``model.json``: the weights (no pickle; the baseline's idf and coefficients
  too) and everything needed to use them (architecture, classes, preprocessing, validation and test
  metrics; :func:`dlkit.export.save_release`);
- ``vocab.json`` (nbsvm, baseline: the n-gram table, JSON) or ``tokenizer/`` (minilm): how text becomes
  the model's input, exactly as in training; their sha256 is in model.json;
- ``model.onnx`` (unless ``--no-onnx``): the graph for ONNX Runtime, any batch size and text length. Its
  inputs are what the featurizer makes: ``ids`` (B, T) int64 (and ``counts`` (B, T) float32 for the
  baseline); its output ``logits`` (B, 2).

ONNX Runtime must agree with PyTorch on ``--parity-examples`` real reviews (the run's test reviews when
its dataset is on this machine, else synthetic ones, and it says which) within ``--atol``/``--rtol``;
otherwise nothing is written (:func:`dlkit.project.export_main`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlkit import project
from dlkit.data import file_digest, locate
from dlkit.export import export_onnx_checked, save_release
from dlkit.runs import RunFolder
from projects.sentiment_analyzer.data import length_batches, load_splits, synthetic_reviews
from projects.sentiment_analyzer.models import load_run

__all__ = ["main", "parity_texts", "write_release"]

INPUT_NAMES = {"nbsvm": ["ids"], "baseline": ["ids", "counts"], "minilm": ["ids"]}


def parity_texts(info: dict[str, Any], n: int) -> tuple[list[str], str]:
    """Up to ``n`` test reviews of the run's dataset when found locally (never downloaded), else synthetic."""
    if info["dataset_name"] == "imdb" and locate("imdb") is not None:
        test = load_splits("imdb", test_subset=n).test
        return test.texts, f"{len(test)} IMDB test reviews"
    texts = synthetic_reviews(n, seed=1).texts
    why = "" if info["dataset_name"] == "synthetic" else f" ({info['dataset_name']} not found locally)"
    return texts, f"{len(texts)} synthetic reviews{why}"


def digests(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each file named, or of each file under each folder named (relative paths)."""
    found = {}
    for name in names:
        path = folder / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found.update({str(p.relative_to(folder)): file_digest(p) for p in files})
    return found


def write_release(cfg: project.ExportConfig, run: RunFolder, staging: Path) -> dict[str, Any]:
    """The release of ``run`` in ``staging``: featurizer files, ONNX checked against PyTorch, weights."""
    model, featurizer, info = load_run(run.path)
    name = info["architecture"]["name"]
    keep = ("architecture", "num_classes", "classes", "preprocessing", "dataset", "dataset_name", "metrics")
    metadata: dict[str, Any] = {k: info[k] for k in keep}
    config = {k: v for k, v in run.read_config().items() if k != "runs_dir"}  # no paths of this machine
    metadata["trained_from"] = {"run": run.path.name, "config": config}
    metadata["featurizer_files"] = digests(staging, featurizer.save(staging))
    if cfg.onnx:
        texts, source = parity_texts(info, cfg.parity_examples)
        batches = [
            featurizer.encode([texts[i] for i in idx])
            for idx in length_batches([len(t) for t in texts], 32, shuffle=False)
        ]
        metadata.update(
            export_onnx_checked(
                model,
                batches,
                staging,
                source=source,
                input_name=INPUT_NAMES[name],
                output_name="logits",
                dynamic_length=True,
                atol=cfg.atol,
                rtol=cfg.rtol,
            )  # fmt: skip
        )
    save_release(model, metadata, staging)
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """Export ``--run-dir`` as a release; an ONNX graph that disagrees with PyTorch writes nothing."""
    return project.export_main(argv, project.ExportConfig, write_release)
