"""The texts, as tensors of character ids; random training windows; the validation losses.

The split is nanoGPT's (``data/shakespeare_char/prepare.py``): the first 90% of the text trains, the
last 10% validates. The vocabulary is every character of the whole text (65 for tiny shakespeare).

Three texts (:data:`TEXTS`): tiny shakespeare (``dlkit.data``: found locally or downloaded with its
checksum), a UTF-8 file of your own (``--text-file``), and, for ``--quick`` on a machine without tiny
shakespeare, Python's own help topics (``pydoc_data``, which ships with every CPython): English prose
with code in it, offline, so that quick mode never needs the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.data import choose_dataset, load_dataset
from dlkit.device import autocast
from dlkit.errors import UserError
from dlkit.text import CharVocab
from dlkit.train import get_rank, get_world_size

__all__ = [
    "TEXTS",
    "CharData",
    "Windows",
    "choose_text",
    "encode_text",
    "estimate_loss",
    "get_batch",
    "load_char_data",
    "loss_report",
    "python_help_text",
    "read_text_file",
    "split_loss",
    "split_text",
    "val_windows",
]

VAL_FRACTION = 0.1
TEXTS = {
    "tiny_shakespeare": "tiny shakespeare (1.1M characters of the plays, char-rnn's input.txt)",
    "python_help": "Python's help topics (pydoc_data, shipped with Python): the offline text of --quick",
    "file": "a UTF-8 text file of your own (--text-file)",
}


@dataclass
class CharData:
    """A text's vocabulary and its two splits as int64 character ids (1-d tensors).

    ``name`` says what the text is without any path (it goes into releases and /health); ``source``
    also says where it was read from (printed, and kept in the run folder)."""

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    name: str
    source: str

    def to(self, device: torch.device | str) -> CharData:
        return CharData(self.vocab, self.train.to(device), self.val.to(device), self.name, self.source)


def split_text(
    text: str, name: str = "text", source: str = "", val_fraction: float = VAL_FRACTION
) -> CharData:
    """The first ``1 - val_fraction`` of ``text`` for training, the rest for validation."""
    vocab = CharVocab.from_text(text)
    ids = vocab.encode_tensor(text)  # (N,)
    n = int(len(ids) * (1 - val_fraction))
    return CharData(vocab, ids[:n], ids[n:], name, source or name)


def python_help_text() -> str:
    """Python's help topics (``help("assert")`` ...), 79 pages of English and code, ~465k characters."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:  # a Python without its standard library's docs (rare)
        raise UserError(
            "quick mode needs tiny shakespeare or Python's pydoc_data (missing here): set DLKIT_DATA to a "
            "folder with tiny_shakespeare/input.txt, or pass --text-file FILE"
        ) from e
    return "\n\n".join(topics[key] for key in sorted(topics))


def choose_text(quick: bool, text_file: str = "") -> str:
    """Which text a run trains on: ``"file"`` with ``--text-file``; tiny shakespeare in full mode
    (downloaded when missing); in quick mode tiny shakespeare only when it is on the machine, else
    ``"python_help"`` (printed, so the run says which data it used)."""
    if text_file:
        return "file"
    return choose_dataset("tiny_shakespeare", "python_help", quick=quick)


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file, or a UserError that says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UserError(f"--text-file {path}: no such file") from e
    except IsADirectoryError as e:
        raise UserError(f"--text-file {path} is a folder, not a text file") from e
    except UnicodeDecodeError as e:
        raise UserError(f"--text-file {path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from e
    return text


def load_char_data(
    text: str = "tiny_shakespeare",
    *,
    max_chars: int | None = None,
    text_file: str = "",
    download: bool = True,
) -> CharData:
    """The text ``text`` (a key of :data:`TEXTS`), maybe only its first ``max_chars`` characters
    (tests, --quick). A slice keeps the 90/10 split and gets its own (maybe smaller) vocabulary."""
    if text == "file":
        if not text_file:
            raise UserError("this run trained on a text file of its own: pass --text-file FILE")
        body = read_text_file(text_file)
        name, source = f"the text file {Path(text_file).name}", f"the text file {text_file}"
    elif text == "python_help":
        body, name = python_help_text(), "Python's help topics (pydoc_data)"
        source = name + ", shipped with Python: tiny shakespeare is not on this machine"
    elif text == "tiny_shakespeare":
        data = load_dataset("tiny_shakespeare", download=download)
        body, name, source = data.text, "tiny shakespeare", data.source
    else:
        raise UserError(f"unknown text {text!r}: one of {', '.join(TEXTS)}")
    if max_chars is not None and max_chars < len(body):
        body = body[:max_chars]
        name, source = (f"the first {max_chars:,} characters of {s}" for s in (name, source))
    if len(body) < 200:
        raise UserError(f"{source} has {len(body)} characters: a language model needs a longer text")
    return split_text(body, name, source)


def encode_text(vocab: CharVocab, text: str, what: str = "the text") -> torch.Tensor:
    """``text`` as ids (N,), or a UserError naming the characters the vocabulary lacks."""
    missing = vocab.unknown(text)
    if missing:
        shown = ", ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise UserError(
            f"{what} has {len(missing)} character(s) the model never saw in training: {shown}. "
            f"It knows these {len(vocab)}: {vocab.chars!r}"
        )
    return vocab.encode_tensor(text)


def get_batch(
    ids: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``ids`` and the same windows shifted by one: (B, T), (B, T).

    Made on ``ids``'s device by one gather (the data stays on the GPU; no loader, no copies).
    """
    if len(ids) <= block_size:
        raise UserError(
            f"a split of {len(ids)} characters is too short for windows of {block_size} + 1: use a longer "
            "text or a smaller --block-size"
        )
    device = ids.device if generator is None else generator.device
    starts = torch.randint(len(ids) - block_size, (batch_size,), device=device, generator=generator)
    index = starts.to(ids.device)[:, None] + torch.arange(block_size + 1, device=ids.device)  # (B, T+1)
    windows = ids[index]
    return windows[:, :-1], windows[:, 1:]


class Windows:
    """Endless training batches of random windows (the data of ``dlkit.train.train_loop``).

    The windows come from the global RNG of the data's device, which every checkpoint saves, so a
    resumed run draws the windows an uninterrupted one would. ``batch_size`` is the global batch:
    under torchrun each of the N processes draws ``batch_size / N`` windows of its own (its RNG is
    re-seeded once, from the shared seed and its rank, at its first batch).
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int) -> None:
        world = get_world_size()
        if batch_size % world:
            raise UserError(f"--batch-size {batch_size} must be divisible by the {world} processes")
        self.ids, self.block_size, self.batch_size = ids, block_size, batch_size // world
        self._reseed = world > 1

    def __iter__(self) -> Windows:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reseed:  # the same draw on every process (same seed, or the same restored RNG state)
            self._reseed = False
            torch.manual_seed(int(torch.randint(2**62, (1,))) + get_rank())  # CPU and GPU generators
        return get_batch(self.ids, self.block_size, self.batch_size)


def val_windows(
    ids: torch.Tensor, block_size: int, batch_size: int, num_batches: int, seed: int = 1234
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` fixed random batches of windows (the same every call: comparable estimates)."""
    generator = torch.Generator().manual_seed(seed)  # on the CPU, apart from the training RNG
    return [get_batch(ids.cpu(), block_size, batch_size, generator) for _ in range(num_batches)]


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
    if n < 1:
        raise UserError(f"{len(ids)} characters are too few to score with windows of {block_size}")
    x = ids[: n * block_size].view(n, block_size)  # (N, T)
    y = ids[1 : n * block_size + 1].view(n, block_size)  # (N, T): each next character
    total = torch.zeros((), device=ids.device, dtype=torch.float64)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        with autocast(ids.device, amp_dtype):
            logits = net(xb)  # (B, T, V)
        total += F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="sum")
    net.train(was_training)
    return total.item() / (n * block_size)


def loss_report(loss: float) -> dict[str, Any]:
    """A loss in nats per character with its perplexity and bits per character."""
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_char": loss / math.log(2)}
