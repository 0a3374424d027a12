"""The reviews: IMDB (``dlkit.data``) when it is found locally, or a small synthetic set that ships.

    train, test = load_splits("imdb", train_subset=2000, test_subset=1000)

``synthetic`` is made up here (no real review ships with the course): short texts drawn from lists of
positive, negative and neutral words, with "not" flipping the next word. It checks that the code runs
and learns, in seconds; the numbers it gives say nothing about real reviews.
"""

from __future__ import annotations

import random

import torch

from dlkit.data import TextClassificationData, load_dataset

__all__ = ["DATASETS", "load_splits", "synthetic_reviews"]

DATASETS = ("imdb", "synthetic")
POSITIVE = [
    "great",
    "excellent",
    "wonderful",
    "superb",
    "brilliant",
    "moving",
    "funny",
    "beautiful",
    "loved",
    "perfect",
]
NEGATIVE = ["awful", "terrible", "boring", "dull", "horrible", "waste", "stupid", "worst", "hated", "poor"]
NEUTRAL = [
    "the",
    "film",
    "movie",
    "plot",
    "actors",
    "story",
    "this",
    "was",
    "and",
    "it",
    "a",
    "of",
    "scenes",
    "director",
    "ending",
    "music",
    "characters",
    "i",
    "watched",
    "saw",
    "cast",
    "script",
]


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
    source = f"synthetic reviews ({n:,}, made up from word lists; not real data)"
    return TextClassificationData(texts, torch.tensor(labels, dtype=torch.long), ["neg", "pos"], source)


def load_splits(
    dataset: str = "imdb", *, train_subset: int | None = None, test_subset: int | None = None, seed: int = 0
) -> tuple[TextClassificationData, TextClassificationData]:
    """(train, test) of ``dataset``, each cut to a stratified random subset when asked."""
    if dataset == "imdb":
        train, test = load_dataset("imdb", "train"), load_dataset("imdb", "test")
    elif dataset == "synthetic":
        train, test = (
            synthetic_reviews(train_subset or 2000, seed),
            synthetic_reviews(test_subset or 1000, seed + 1),
        )
        return train, test  # made at the size asked
    else:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if train_subset:
        train = train.subset(train_subset, seed)
    if test_subset:
        test = test.subset(test_subset, seed)
    return train, test
