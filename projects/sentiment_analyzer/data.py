"""The reviews and their batches: IMDB (``dlkit.data``) or a small synthetic set made here.

    splits = load_splits("imdb", val_fraction=0.1)        # train, val (held out from train), test
    print(splits.describe())
    batches = training_batches(id_lists, labels, 256, collate, seed=0)   # epoch -> (x, y) batches

The validation split is carved from the training reviews (a seeded random 10% by default): training
selects on it (early stopping, the best epoch's weights); the test split is scored once, at the end.

``synthetic`` is made up here (no real review ships with the course): short texts drawn from lists of
positive, negative and neutral words, with "not" flipping the next word. It needs no download and
checks that the code runs and learns, in seconds; its numbers say nothing about real reviews.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from dlkit.data import TextClassificationData, load_dataset, split
from dlkit.train import get_rank, get_world_size

__all__ = ["DATASETS", "Batches", "Splits", "length_batches", "load_splits", "synthetic_reviews"]
__all__ += ["training_batches"]

DATASETS = ("imdb", "synthetic")
POSITIVE = ["great", "excellent", "wonderful", "superb", "brilliant", "moving", "funny", "beautiful"]
POSITIVE += ["loved", "perfect"]
NEGATIVE = ["awful", "terrible", "boring", "dull", "horrible", "waste", "stupid", "worst", "hated", "poor"]
NEUTRAL = ["the", "film", "movie", "plot", "actors", "story", "this", "was", "and", "it", "a", "of"]
NEUTRAL += ["scenes", "director", "ending", "music", "characters", "i", "watched", "saw", "cast", "script"]
SYNTHETIC_NOTE = "made up from word lists, not real reviews"


def _review(rng: random.Random, label: int) -> str:
    words = []
    for _ in range(rng.randint(6, 30)):
        if rng.random() < 0.25:
            positive = rng.random() < (0.8 if label else 0.2)
            if rng.random() < 0.15:  # "not great" counts as negative: word order matters a little
                words += ["not", rng.choice(NEGATIVE if positive else POSITIVE)]
            else:
                words.append(rng.choice(POSITIVE if positive else NEGATIVE))
        else:
            words.append(rng.choice(NEUTRAL))
    return " ".join(words).capitalize() + rng.choice([".", "!", "..."])


def synthetic_reviews(n: int, seed: int = 0) -> TextClassificationData:
    """``n`` made-up reviews, half of each class, shuffled."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    texts = [_review(rng, y) for y in labels]
    source = f"synthetic reviews ({SYNTHETIC_NOTE})"
    return TextClassificationData(texts, torch.tensor(labels, dtype=torch.long), ["neg", "pos"], source)


@dataclass
class Splits:
    """Training, validation (held out from the training reviews) and test reviews."""

    train: TextClassificationData
    val: TextClassificationData
    test: TextClassificationData

    def describe(self) -> str:
        return (
            f"data: {self.train.source}: {len(self.train):,} train, {len(self.val):,} validation "
            f"(held out from train), {len(self.test):,} test reviews"
        )

    def of(self, name: str) -> TextClassificationData:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def load_splits(
    dataset: str = "imdb",
    *,
    val_fraction: float = 0.1,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> Splits:
    """Train, val and test reviews of ``dataset``. ``train_subset`` reviews are drawn (stratified) from
    the training data before ``val_fraction`` of them is held out for validation; ``test_subset``
    cuts the test split. The same arguments give the same splits (evaluate relies on it)."""
    if dataset == "imdb":
        train, test = load_dataset("imdb", "train"), load_dataset("imdb", "test")
        if train_subset:
            train = train.subset(train_subset, seed)
        if test_subset:
            test = test.subset(test_subset, seed)
    elif dataset == "synthetic":
        train = synthetic_reviews(train_subset or 2000, seed)
        test = synthetic_reviews(test_subset or 1000, seed + 1)
    else:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    val, train = split(train, max(1, round(val_fraction * len(train))), seed=seed + 1)
    return Splits(train, val, test)


# --- Batches -------------------------------------------------------------------------------------------


def length_batches(
    lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0
) -> list[list[int]]:
    """Batches of indices of similar length (little padding). Shuffled: sorted within chunks of 50
    batches, then the batches in random order; else sorted by length overall (for evaluation)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        chunk = 50 * batch_size
        order = [
            i
            for s in range(0, len(order), chunk)
            for i in sorted(order[s : s + chunk], key=lengths.__getitem__)
        ]
    else:
        order.sort(key=lengths.__getitem__)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


class Batches:
    """One pass of ``(collate(id lists), labels)`` batches over index ``groups``; sized, so the loop and
    the progress bar know how many steps an epoch has."""

    def __init__(
        self,
        groups: list[list[int]],
        id_lists: Sequence[Sequence[int]],
        labels: torch.Tensor,
        collate: Callable[[Sequence[Sequence[int]]], tuple[torch.Tensor, ...]],
    ) -> None:
        self.groups, self.id_lists, self.labels, self.collate = groups, id_lists, labels, collate

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
        for idx in self.groups:
            yield self.collate([self.id_lists[i] for i in idx]), self.labels[idx]


def training_batches(
    id_lists: Sequence[Sequence[int]],
    labels: torch.Tensor,
    batch_size: int,
    collate: Callable[[Sequence[Sequence[int]]], tuple[torch.Tensor, ...]],
    *,
    seed: int = 0,
    by_length: bool = False,
) -> Callable[[int], Batches]:
    """``epoch -> Batches``: the epoch's shuffle is a function of (seed, epoch) alone, so a resumed run
    and every torchrun process see the same global batches. ``by_length`` groups reviews of similar
    length (:func:`length_batches`: less padding for MiniLM). Under torchrun process r takes items
    r, r + N, ... of each global batch; a batch is cut to a multiple of N so that every process holds
    the same number (the mean of the processes' mean losses is then the batch's mean loss)."""
    lengths = [len(ids) for ids in id_lists]
    rank, world = get_rank(), get_world_size()

    def epoch(e: int) -> Batches:
        if by_length:
            groups = length_batches(lengths, batch_size, shuffle=True, seed=seed * 1009 + e)
        else:
            g = torch.Generator().manual_seed(seed * 1009 + e)
            order = torch.randperm(len(lengths), generator=g).tolist()
            groups = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        if world > 1:
            groups = [grp[: len(grp) - len(grp) % world][rank::world] for grp in groups if len(grp) >= world]
        return Batches(groups, id_lists, labels, collate)

    return epoch
