"""Text -> n-gram ids, the n-gram table and its naive-Bayes log-count ratios.

    table = NgramTable.build(texts, ngram=3, min_freq=2, max_size=800_000)
    ids = table.encode("Not good at all")       # sorted distinct ids of its 1-, 2- and 3-grams
    X, lengths = table.encode_batch(texts)      # (B, T) padded with 0, (B,)
    spans = token_spans(text)                   # where each of tokenize(text)'s words is in text

The words are :func:`dlkit.text.tokenize`'s; the n-grams of a text are counted once each (binarized,
as NBSVM does: Wang & Manning 2012, "Baselines and Bigrams"). ``ratios`` are the log-count ratios
r = log((p / |p|_1) / (q / |q|_1)) with p, q the smoothed document counts of each n-gram in positive and
negative reviews. The table round-trips through JSON (:meth:`to_dict`) so that predict and serve read
text exactly as training did.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlkit.text import clean_text, pad_batch, tokenize

__all__ = ["BertFeaturizer", "CountFeaturizer", "NgramFeaturizer", "NgramTable", "load_featurizer"]
__all__ += ["flat_batch", "nb_ratios", "ngram_spans", "ngrams", "token_spans"]


def ngrams(tokens: Sequence[str], n: int = 3) -> list[str]:
    """All 1- to ``n``-grams of ``tokens``, words joined by one space: ["not", "good", "not good"]."""
    grams = list(tokens)
    for k in range(2, n + 1):
        grams += [" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]
    return grams


def token_spans(text: str) -> list[tuple[int, int] | None]:
    """(start, end) in ``text`` of each word :func:`dlkit.text.tokenize` finds, or None for a word that
    cannot be placed (one that HTML unescaping or a multi-character lower case made).

    The words are found in order in a lower-cased copy of ``text`` of the same length, so tags and
    entities that tokenize drops are simply skipped over.
    """
    lowered = "".join(low if len(low := c.lower()) == 1 else c for c in text)
    lowered = lowered.replace("\u2019", "'").replace("`", "'")
    spans: list[tuple[int, int] | None] = []
    at = 0
    for token in tokenize(text):
        start = lowered.find(token, at)
        if start < 0:
            spans.append(None)
            continue
        spans.append((start, start + len(token)))
        at = start + len(token)
    return spans


def ngram_spans(
    tokens: Sequence[str], spans: Sequence[tuple[int, int] | None], gram: str
) -> list[tuple[int, int]]:
    """Every (start, end) in the text of the n-gram ``gram`` ("not good") among ``tokens``."""
    words = gram.split(" ")
    k = len(words)
    found = []
    for i in range(len(tokens) - k + 1):
        if list(tokens[i : i + k]) == words:
            first, last = spans[i], spans[i + k - 1]
            if first is not None and last is not None:
                found.append((first[0], last[1]))
    return found


def flat_batch(id_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated ids (N,) and where each list starts (B,): EmbeddingBag's input, no padding."""
    lengths = torch.tensor([len(ids) for ids in id_lists])
    ids = torch.tensor([i for lst in id_lists for i in lst], dtype=torch.long)
    return ids, torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])


def nb_ratios(
    doc_ids: Sequence[Sequence[int]], labels: Sequence[int], size: int, alpha: float = 1.0
) -> torch.Tensor:
    """The naive-Bayes log-count ratio of each of ``size`` features (size,), from binarized documents."""
    counts = torch.zeros(2, size, dtype=torch.float64)  # (class, feature): documents holding it
    for ids, y in zip(doc_ids, labels, strict=True):
        counts[int(y)].index_add_(
            0, torch.as_tensor(ids, dtype=torch.long), torch.ones(len(ids), dtype=torch.float64)
        )
    smoothed = counts + alpha
    log_p = (smoothed[1] / smoothed[1].sum()).log()
    log_q = (smoothed[0] / smoothed[0].sum()).log()
    return (log_p - log_q).float()


@dataclass
class NgramTable:
    """n-gram <-> id; id 0 is padding. Unknown n-grams are dropped (they carry no evidence)."""

    grams: list[str]  # grams[0] == "<pad>"
    ngram: int = 3
    stoi: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.stoi = {g: i for i, g in enumerate(self.grams)}

    def __len__(self) -> int:
        return len(self.grams)

    @classmethod
    def build(
        cls, texts: Iterable[str], *, ngram: int = 3, min_freq: int = 2, max_size: int | None = None
    ) -> NgramTable:
        """The n-grams found in at least ``min_freq`` texts, most frequent first (ties: first seen)."""
        return cls.from_tokens(map(tokenize, texts), ngram=ngram, min_freq=min_freq, max_size=max_size)

    @classmethod
    def from_tokens(
        cls,
        token_lists: Iterable[Sequence[str]],
        *,
        ngram: int = 3,
        min_freq: int = 2,
        max_size: int | None = None,
    ) -> NgramTable:
        """:meth:`build` from texts already tokenized."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:  # each n-gram once per text, in text order: never a set's order,
            counts.update(dict.fromkeys(ngrams(tokens, ngram)).keys())  # which changes per process
        top = counts.most_common(None if max_size is None else max_size - 1)
        return cls(["<pad>", *(g for g, c in top if c >= min_freq)], ngram)

    def encode_tokens(self, tokens: Sequence[str]) -> list[int]:
        """The sorted distinct ids of the known n-grams of ``tokens``."""
        get = self.stoi.get
        return sorted({i for i in map(get, ngrams(tokens, self.ngram)) if i is not None})

    def encode(self, text: str) -> list[int]:
        return self.encode_tokens(tokenize(text))

    def encode_batch(
        self, texts: Sequence[str], max_len: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, T) padded with 0, lengths (B,)); a text without known n-grams is one padding id."""
        return pad_batch([self.encode(t) for t in texts], max_len=max_len, pad_id=0)

    def coverage(self, tokens: Sequence[str]) -> float:
        """The fraction of ``tokens`` (single words) the table knows: low for other languages."""
        return sum(t in self.stoi for t in tokens) / max(len(tokens), 1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ngram", "ngram": self.ngram, "grams": self.grams}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NgramTable:
        if data.get("kind") != "ngram":
            raise ValueError(f"not an n-gram table: kind {data.get('kind')!r}")
        return cls(list(data["grams"]), int(data["ngram"]))


# --- Featurizers: texts -> the tensors a model takes; saved next to its weights ----------------------

VOCAB_FILE = "vocab.json"
TOKENIZER_DIR = "tokenizer"


class NgramFeaturizer:
    """For ``nbsvm``: each text's distinct known n-gram ids, padded: ``(ids (B, T),)``."""

    kind = "ngram_ids"

    def __init__(self, table: NgramTable) -> None:
        self.table = table

    def id_lists(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.table.encode(t) for t in texts]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        """The release's input (what ONNX takes): ``(ids (B, T) padded with 0,)``."""
        return (pad_batch(self.id_lists(texts))[0],)

    def collate(self, id_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Training's faster input: ``(ids (N,), offsets (B,))``, no padding (:func:`flat_batch`)."""
        return flat_batch(id_lists)

    def grams_of(self, ids: torch.Tensor) -> list[str]:
        return [self.table.grams[i] for i in ids.tolist()]

    def truncation_note(self, text: str) -> str | None:
        return None  # reads every word

    def save(self, folder: Path) -> list[str]:
        (folder / VOCAB_FILE).write_text(json.dumps(self.table.to_dict()), encoding="utf-8")
        return [VOCAB_FILE]

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any]) -> NgramFeaturizer:
        return cls(NgramTable.from_dict(json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))))


class CountFeaturizer(NgramFeaturizer):
    """For ``baseline``: distinct known n-gram ids and how often each occurs: ``(ids, counts)`` (B, T)."""

    kind = "ngram_counts"

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        get = self.table.stoi.get
        rows = []
        for text in texts:
            counts = Counter(i for i in map(get, ngrams(tokenize(text), self.table.ngram)) if i is not None)
            rows.append(sorted(counts.items()))
        ids = pad_batch([[i for i, _ in row] for row in rows])[0]  # (B, T)
        counts = torch.zeros(ids.shape)
        for b, row in enumerate(rows):
            counts[b, : len(row)] = torch.tensor([float(c) for _, c in row]) if row else 0.0
        return ids, counts


class BertFeaturizer:
    """For ``minilm``: WordPiece ids from the model's own tokenizer, cut to ``max_len``: ``(ids (B, T),)``."""

    kind = "wordpiece"

    def __init__(self, tokenizer: Any, max_len: int = 256) -> None:
        self.tokenizer, self.max_len = tokenizer, max_len

    def id_lists(self, texts: Sequence[str]) -> list[list[int]]:
        cleaned = [clean_text(t) for t in texts]  # <br /> tags out; the tokenizer lower-cases itself
        return self.tokenizer(cleaned, truncation=True, max_length=self.max_len)["input_ids"]

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, ...]:
        return self.collate(self.id_lists(texts))

    def collate(self, id_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        return (pad_batch(id_lists, pad_id=self.tokenizer.pad_token_id)[0],)

    def truncation_note(self, text: str) -> str | None:
        n = len(self.tokenizer(clean_text(text), truncation=False)["input_ids"])
        if n > self.max_len:
            return f"only the first {self.max_len} of its {n} tokens were read (the model's limit)"
        return None

    def save(self, folder: Path) -> list[str]:
        self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        return [TOKENIZER_DIR]

    @classmethod
    def load(cls, folder: Path, metadata: dict[str, Any]) -> BertFeaturizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder / TOKENIZER_DIR), local_files_only=True)
        return cls(tokenizer, int(metadata["preprocessing"]["max_len"]))


FEATURIZERS = {"nbsvm": NgramFeaturizer, "baseline": CountFeaturizer, "minilm": BertFeaturizer}


def load_featurizer(model: str, folder: Path, metadata: dict[str, Any]) -> Any:
    """The featurizer saved in ``folder`` (a run or release folder) for model ``model``."""
    return FEATURIZERS[model].load(Path(folder), metadata)
