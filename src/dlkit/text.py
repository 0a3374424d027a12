"""Text into tensors, in plain Python: a word tokenizer, a vocabulary, a character vocabulary, padding.

    tokens = tokenize("It's <br />GREAT!")          # ["it's", "great", "!"]
    vocab = Vocab.build(map(tokenize, texts), min_freq=2, max_size=30_000)
    ids, lengths = pad_batch([vocab.encode(tokenize(t)) for t in texts], max_len=256)  # (B, T), (B,)
    chars = CharVocab.from_text(shakespeare)        # one id per distinct character
    x = chars.encode_tensor("ROMEO:")               # (6,) int64

No torchtext (its development stopped and it breaks with current torch). A vocabulary round-trips through
JSON (:meth:`Vocab.to_dict` / :meth:`Vocab.from_dict`) so that it travels with released weights.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

__all__ = ["PAD", "UNK", "CharVocab", "Vocab", "add_bigrams", "clean_text", "pad_batch", "tokenize"]

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 in every Vocab
_TAG = re.compile(r"<[^>]{0,40}>")  # IMDB reviews carry <br /> line breaks
# A word with an inner apostrophe ("don't", "it's"), a number, or any single other visible character.
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,]\d+)?|[^\w\s]")


def clean_text(text: str) -> str:
    """Lower case, HTML tags and entities removed, curly apostrophes straightened."""
    text = html.unescape(_TAG.sub(" ", text))
    return text.replace("\u2019", "'").replace("`", "'").lower()


def tokenize(text: str) -> list[str]:
    """Words, numbers and punctuation marks of ``text`` after :func:`clean_text`, in order."""
    return _TOKEN.findall(clean_text(text))


def add_bigrams(tokens: Sequence[str]) -> list[str]:
    """``tokens`` followed by each adjacent pair ("not good"): word order that a bag of words can see."""
    return [*tokens, *(f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))]


@dataclass
class Vocab:
    """Token <-> id. Id 0 is padding, id 1 stands for every token the vocabulary does not hold."""

    itos: list[str]

    def __post_init__(self) -> None:
        if self.itos[:2] != [PAD, UNK]:
            raise ValueError(f"a Vocab starts with {PAD!r} and {UNK!r}, not {self.itos[:2]}")
        self.stoi = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a Vocab holds each token once")

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], *, min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """The most frequent tokens (ties by first appearance) seen at least ``min_freq`` times."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = [t for t, n in counts.most_common() if n >= min_freq and t not in (PAD, UNK)]
        return cls([PAD, UNK, *kept[: None if max_size is None else max_size - 2]])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.stoi.get(token, 1) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        return cls(list(data["itos"]))


@dataclass
class CharVocab:
    """Character <-> id for a character-level language model (no padding or unknown id: a model
    trained on a text can only read and write that text's characters)."""

    chars: str

    def __post_init__(self) -> None:
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars):
            raise ValueError("a CharVocab holds each character once")

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` that the vocabulary lacks (sorted, each once)."""
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text: str) -> list[int]:
        missing = self.unknown(text)
        if missing:
            raise ValueError(f"characters not in the vocabulary: {''.join(missing)!r}")
        return [self.stoi[c] for c in text]

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharVocab:
        return cls(data["chars"])


def pad_batch(
    sequences: Sequence[Sequence[int]], *, max_len: int | None = None, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists -> ``(ids (B, T), lengths (B,))``, each cut to ``max_len`` and right-padded with
    ``pad_id`` to the longest. An empty sequence keeps one padding id so that T >= 1 (length 0)."""
    cut = [list(s[:max_len]) if max_len is not None else list(s) for s in sequences]
    lengths = torch.tensor([len(s) for s in cut], dtype=torch.long)
    tensors = [torch.tensor(s or [pad_id], dtype=torch.long) for s in cut]
    return pad_sequence(tensors, batch_first=True, padding_value=pad_id), lengths
