"""Tiny shakespeare as tensors of character ids, random training windows, and the validation loss.

The split is nanoGPT's (``data/shakespeare_char/prepare.py``): the first 90% of the text trains, the
last 10% validates. The vocabulary is every character of the whole text (65 of them), as there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.data import load_dataset
from dlkit.text import CharVocab

__all__ = [
    "CharData",
    "autocast",
    "estimate_loss",
    "get_batch",
    "load_char_data",
    "split_loss",
    "split_text",
    "val_windows",
]

VAL_FRACTION = 0.1


@dataclass
class CharData:
    """A text's vocabulary and its two splits as int64 character ids (1-d tensors)."""

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    source: str

    def to(self, device: torch.device | str) -> CharData:
        return CharData(self.vocab, self.train.to(device), self.val.to(device), self.source)


def split_text(text: str, source: str = "text", val_fraction: float = VAL_FRACTION) -> CharData:
    """The first ``1 - val_fraction`` of ``text`` for training, the rest for validation."""
    vocab = CharVocab.from_text(text)
    ids = vocab.encode_tensor(text)  # (N,)
    n = int(len(ids) * (1 - val_fraction))
    return CharData(vocab, ids[:n], ids[n:], source)


def load_char_data(max_chars: int | None = None, download: bool = True, text_file: str = "") -> CharData:
    """Tiny shakespeare (``dlkit.data``) or the UTF-8 ``text_file``, maybe only its first ``max_chars``
    characters (tests, --quick). A slice keeps the 90/10 split and its own (maybe smaller) vocabulary."""
    if text_file:
        text, source = Path(text_file).read_text(encoding="utf-8"), str(text_file)
    else:
        data = load_dataset("tiny_shakespeare", download=download)
        text, source = data.text, data.source
    if max_chars is not None and max_chars < len(text):
        text, source = text[:max_chars], f"the first {max_chars:,} characters of {source}"
    return split_text(text, source)


def get_batch(
    ids: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``ids`` and the same windows shifted by one: (B, T), (B, T).

    Made on ``ids``'s device by one gather (the data stays on the GPU; no loader, no copies).
    """
    if len(ids) <= block_size:
        raise ValueError(f"a split of {len(ids)} characters is too short for windows of {block_size} + 1")
    device = ids.device if generator is None else generator.device
    starts = torch.randint(len(ids) - block_size, (batch_size,), device=device, generator=generator)
    index = starts.to(ids.device)[:, None] + torch.arange(block_size + 1, device=ids.device)  # (B, T+1)
    windows = ids[index]
    return windows[:, :-1], windows[:, 1:]


def val_windows(
    ids: torch.Tensor, block_size: int, batch_size: int, num_batches: int, seed: int = 1234
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` fixed random batches of windows (the same every call: comparable estimates)."""
    generator = torch.Generator().manual_seed(seed)  # on the CPU, apart from the training RNG
    return [get_batch(ids.cpu(), block_size, batch_size, generator) for _ in range(num_batches)]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@torch.no_grad()
def estimate_loss(
    net: nn.Module,
    ids: torch.Tensor,
    block_size: int,
    batch_size: int,
    num_batches: int,
    amp_dtype: torch.dtype | None = None,
    seed: int = 1234,
) -> float:
    """Mean cross-entropy (nats per character) over every position of ``num_batches`` random windows,
    as nanoGPT's ``estimate_loss`` computes it; the windows are fixed by ``seed``."""
    was_training = net.training
    net.eval()
    device = ids.device
    total = torch.zeros((), device=device, dtype=torch.float64)
    for x, y in val_windows(ids, block_size, batch_size, num_batches, seed):
        x, y = x.to(device), y.to(device)
        with autocast(device, amp_dtype):
            logits = net(x)  # (B, T, V)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    net.train(was_training)
    return total.item() / num_batches


@torch.no_grad()
def split_loss(
    net: nn.Module, ids: torch.Tensor, block_size: int, batch_size: int, amp_dtype: torch.dtype | None = None
) -> float:
    """Mean cross-entropy over the whole split cut into non-overlapping windows of ``block_size``
    (the last ``len % block_size`` characters left out): no sampling noise, the same every time."""
    was_training = net.training
    net.eval()
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)  # (N, T)
    y = ids[1 : n * block_size + 1].view(n, block_size)  # (N, T): each next character
    total = torch.zeros((), device=ids.device, dtype=torch.float64)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        with autocast(ids.device, amp_dtype):
            logits = net(xb)  # (B, T, V)
        total += F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="sum")
    net.train(was_training)
    return total.item() / (n * block_size)
