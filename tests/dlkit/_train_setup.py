"""Tiny data and models shared by the training tests and the scripts they launch (not a test module).

The data are made here with torch, not with dlkit.data, so that these tests depend only on train.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

HERE = Path(__file__).resolve().parent


def easy_classification(n: int = 512, num_features: int = 10, num_classes: int = 3, seed: int = 0):
    """(train, val) TensorDatasets, 3/4 and 1/4 of ``n`` points labelled by a random linear map."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, num_features, generator=g)
    y = (X @ torch.randn(num_features, num_classes, generator=g)).argmax(dim=1)  # (n,) int64
    split = n * 3 // 4
    return TensorDataset(X[:split], y[:split]), TensorDataset(X[split:], y[split:])


def mlp(num_features: int = 10, num_classes: int = 3, hidden: int = 32, dropout: float = 0.0) -> nn.Module:
    return nn.Sequential(
        nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )


def subprocess_env() -> dict[str, str]:
    """One thread per process (the test machine shares 2 cores) and quiet progress bars."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "DLKIT_PROGRESS": "0"}


def write_json(path: str | Path, data: object) -> None:
    Path(path).write_text(json.dumps(data))
