"""The ratings, the catalogue, the splits and the ranking task every model of this project is scored on.

The protocol (the issue's contract, measured on MovieLens latest-small, 2016 release):

- **random split**: the ratings in file order, ``numpy.random.default_rng(seed).permutation``, the first
  10% held out, the rest for training; **time split**: each user's latest 10% of ratings held out.
- **validation**: carved from the training part the same way (the permutation of seed + 1, or each
  user's latest 10% of their training ratings). Hyperparameters and keep-best use it; the test part
  is scored once, at the end.
- **ranking task**: every training rating is an interaction (whatever its stars); relevant = held-out
  ratings of 4 stars or more on items seen in training; the candidates of a user = the items seen in
  training minus that user's training items; the users scored = those with something relevant.
  On latest-small: 618 test users, K = 10.

Quick mode uses :func:`synthetic_ratings`, a small made-up interaction set (users with tastes over
made-up genres, items with Zipf popularity), so that every command runs offline in seconds.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from dlkit.data import RatingsData, load_dataset
from dlkit.errors import UserError
from dlkit.ranking import ranking_metrics, top_k

__all__ = [
    "DATASETS",
    "Catalogue",
    "Histories",
    "ProtocolSplits",
    "RankingTask",
    "Split",
    "evaluate_ranking",
    "histories",
    "load_ratings",
    "protocol_splits",
    "random_split",
    "ranking_task",
    "split_title",
    "synthetic_ratings",
    "time_split",
]

DATASETS = ("movielens_small", "movielens_1m", "movielens_25m", "synthetic")
RELEVANT_STARS = 4.0


# --- The ratings ------------------------------------------------------------------------------------


def load_ratings(dataset: str, *, quick: bool = False) -> RatingsData:
    """The ratings of ``dataset`` (``dlkit.data``'s loader: local copy, cache or verified download);
    quick mode uses the synthetic set, which needs no file."""
    if quick or dataset == "synthetic":
        data = synthetic_ratings()
        if quick and dataset != "synthetic":
            print(f"quick mode: a synthetic interaction set stands in for {dataset}")
        return data
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    return load_dataset(dataset, "all")


def synthetic_ratings(
    num_users: int = 240, num_items: int = 320, num_genres: int = 8, seed: int = 0
) -> RatingsData:
    """A made-up MovieLens: each user likes 1-2 of ``num_genres`` genres, items have Zipf popularity
    and one genre; a user rates 15-60 items, drawn by popularity times taste, liked ones with more
    stars. Titles say "Synthetic movie N (year)". Enough structure that EASE beats popularity."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(0, num_genres, num_items)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity = popularity[rng.permutation(num_items)]
    rows: list[tuple[int, int, float, int]] = []
    for user in range(num_users):
        taste = np.full(num_genres, 0.15)
        taste[rng.choice(num_genres, size=rng.integers(1, 3), replace=False)] = 1.0
        weight = popularity * taste[genre]
        count = min(int(rng.integers(15, 61)), num_items // 2)
        items = rng.choice(num_items, size=count, replace=False, p=weight / weight.sum())
        stars = np.clip(
            np.round((2.5 + 2.0 * taste[genre[items]] + rng.normal(0, 0.7, count)) * 2) / 2, 0.5, 5
        )
        start = 9e8 + rng.integers(0, 4e8)
        times = np.sort(start + rng.integers(0, 3e6, count))
        rows += [(user, int(i), float(s), int(t)) for i, s, t in zip(items, stars, times, strict=True)]
    order = rng.permutation(len(rows))  # a file in no particular order, like ratings.csv by user id
    table = np.array([rows[i] for i in order], dtype=np.float64)
    genre_names = [f"Genre{g}" for g in range(num_genres)]
    return RatingsData(
        user=torch.from_numpy(table[:, 0].astype(np.int64)),
        item=torch.from_numpy(table[:, 1].astype(np.int64)),
        rating=torch.from_numpy(table[:, 2].astype(np.float32)),
        timestamp=torch.from_numpy(table[:, 3].astype(np.int64)),
        titles=[f"Synthetic movie {i} ({1950 + i % 70})" for i in range(num_items)],
        genres=[genre_names[g] for g in genre],
        movie_ids=torch.arange(1, num_items + 1),
        source=f"synthetic interactions ({len(rows):,} ratings, {num_users} users, {num_items} items)",
    )


# --- The catalogue: titles and years for people, ids for programs ---------------------------------

_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.*), (?P<article>The|A|An|Les|La|Le|L'|Il|El|Das|Der|Die)$")


def split_title(raw: str) -> tuple[str, int | None]:
    """MovieLens' "Shawshank Redemption, The (1994)" as ("The Shawshank Redemption", 1994)."""
    match = _YEAR.match(raw.strip())
    title, year = (match["title"], int(match["year"])) if match else (raw.strip(), None)
    alternative = re.match(r"^(?P<main>[^(]*?)\s*(?P<aka>\(.*\))$", title)  # "Seven (a.k.a. Se7en)"
    main, aka = (alternative["main"], " " + alternative["aka"]) if alternative else (title, "")
    article = _ARTICLE.match(main)
    if article:
        main = f"{article['article']}{'' if article['article'].endswith(chr(39)) else ' '}{article['rest']}"
    return main + aka, year


def _folded(text: str) -> str:
    """Lower case without accents or punctuation, for search: "Amélie" matches "amelie"."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


@dataclass
class Catalogue:
    """The movies: one entry per item index, with the MovieLens movieId as the public id."""

    titles: list[str]
    years: list[int | None]
    genres: list[str]
    movie_ids: list[int]

    @classmethod
    def of(cls, data: RatingsData) -> Catalogue:
        parsed = [split_title(t) for t in data.titles]
        return cls([t for t, _ in parsed], [y for _, y in parsed], list(data.genres), data.movie_ids.tolist())

    def __len__(self) -> int:
        return len(self.titles)

    def label(self, item: int) -> str:
        """ "The Shawshank Redemption (1994)"."""
        year = self.years[item]
        return self.titles[item] + (f" ({year})" if year else "")

    def index_of(self, movie_id: int) -> int | None:
        """The item index of a MovieLens movieId, or None."""
        if not hasattr(self, "_index"):
            self._index = {m: i for i, m in enumerate(self.movie_ids)}
        return self._index.get(int(movie_id))

    def search(self, query: str, limit: int = 10, popularity: Sequence[float] | None = None) -> list[int]:
        """Items whose title (with its year) has a word starting with each word of ``query``, case and
        accents ignored; best first: the exact title, then titles starting with the query, then titles
        holding it as whole words, then the rest; the more rated first within each."""
        words = _folded(query).split()
        if not words:
            return []
        if not hasattr(self, "_words"):
            self._names = [_folded(t) for t in self.titles]
            self._words = [_folded(self.label(i)).split() for i in range(len(self))]
        phrase = " ".join(words)
        found = []
        for i, title_words in enumerate(self._words):
            if all(any(t.startswith(w) for t in title_words) for w in words):
                name = self._names[i]
                padded = f" {' '.join(title_words)} "
                rank = (
                    0
                    if name == phrase
                    else 1
                    if name.startswith(phrase)
                    else 2
                    if f" {phrase} " in padded
                    else 3
                )
                found.append((rank, -(popularity[i] if popularity is not None else 0.0), i))
        return [i for *_, i in sorted(found)[:limit]]


# --- Splits ---------------------------------------------------------------------------------------------


@dataclass
class Split:
    """Two disjoint sets of rating indices: the part a model learns from and the part held out."""

    train: np.ndarray
    heldout: np.ndarray


def random_split(num_ratings: int, fraction: float = 0.1, seed: int = 0) -> Split:
    """The issue's rule: ``default_rng(seed).permutation(num_ratings)``, its first ``fraction`` held
    out (10,000 of latest-small's 100,004 ratings), the rest for training."""
    order = np.random.default_rng(seed).permutation(num_ratings)
    cut = int(num_ratings * fraction)
    return Split(train=order[cut:], heldout=order[:cut])


def time_split(user: np.ndarray, timestamp: np.ndarray, fraction: float = 0.1) -> Split:
    """Each user's latest ``fraction`` of ratings held out (at least one of each user with two or more;
    ties in time keep the order given): how a recommender is used, predicting what comes next."""
    user, timestamp = np.asarray(user), np.asarray(timestamp)
    order = np.lexsort((np.arange(len(user)), timestamp, user))  # by user, then time, then position
    counts = np.bincount(user[order], minlength=int(user.max()) + 1 if len(user) else 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, counts)  # 0 = a user's oldest rating
    held = np.where(counts >= 2, np.maximum(1, np.floor(counts * fraction)), 0).astype(np.int64)
    is_heldout = rank >= np.repeat(counts - held, counts)
    return Split(train=np.sort(order[~is_heldout]), heldout=np.sort(order[is_heldout]))


@dataclass
class ProtocolSplits:
    """The three parts of one protocol: ``fit`` (+ ``val``) = ``train``; ``test`` held out."""

    name: str  # "random" or "time"
    fit: np.ndarray
    val: np.ndarray
    train: np.ndarray
    test: np.ndarray


def protocol_splits(
    data: RatingsData, how: str = "random", seed: int = 0, fraction: float = 0.1
) -> ProtocolSplits:
    """Test held out from all ratings, validation carved from the rest the same way (seed + 1)."""
    user, stamp = data.user.numpy(), data.timestamp.numpy()
    if how == "random":
        outer = random_split(len(data), fraction, seed)
        inner = random_split(len(outer.train), fraction, seed + 1)
        fit, val = outer.train[inner.train], outer.train[inner.heldout]
    elif how == "time":
        outer = time_split(user, stamp, fraction)
        inner = time_split(user[outer.train], stamp[outer.train], fraction)
        fit, val = outer.train[inner.train], outer.train[inner.heldout]
    else:
        raise UserError(f"unknown split {how!r}: random or time")
    return ProtocolSplits(how, fit=fit, val=val, train=outer.train, test=outer.heldout)


# --- Histories: what each user has rated, as a model reads it --------------------------------------


@dataclass
class Histories:
    """Each user's ratings (CSR by user): the items of user u are ``items[indptr[u]:indptr[u + 1]]``."""

    indptr: torch.Tensor  # (U + 1,) int64
    items: torch.Tensor  # (n,) int64
    ratings: torch.Tensor  # (n,) float32, the stars
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def to(self, device: torch.device | str) -> Histories:
        """The same histories with their tensors on ``device`` (training batches are built there)."""
        return Histories(
            self.indptr.to(device), self.items.to(device), self.ratings.to(device), self.num_items
        )

    def rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (items, ratings, row) of every rating of ``users``; ``row`` = the position in ``users``."""
        users = torch.as_tensor(users, dtype=torch.int64)
        starts, counts = self.indptr[users], self.counts()[users]
        row = torch.repeat_interleave(torch.arange(len(users)), counts)
        first = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        idx = first + torch.arange(int(counts.sum()))
        return self.items[idx], self.ratings[idx], row

    def matrix(self, users: torch.Tensor) -> torch.Tensor:
        """(len(users), I) float32: the stars each user gave (0 where none), what every scorer reads."""
        items, ratings, row = self.rows(users)
        out = torch.zeros(len(users), self.num_items)
        out[row, items] = ratings
        return out

    def csr(self) -> sp.csr_matrix:
        """(U, I) scipy CSR of the stars."""
        return sp.csr_matrix(
            (self.ratings.numpy(), self.items.numpy(), self.indptr.numpy()),
            shape=(self.num_users, self.num_items),
        )

    def item_counts(self) -> torch.Tensor:
        """(I,) how many users rated each item (the popularity)."""
        return torch.bincount(self.items, minlength=self.num_items).float()


def histories(data: RatingsData, index: np.ndarray) -> Histories:
    """The histories of the ratings ``index`` (all users kept, those without ratings empty)."""
    index = np.asarray(index)
    user, item = data.user.numpy()[index], data.item.numpy()[index]
    order = np.lexsort((item, user))
    num_users = data.num_users
    counts = np.bincount(user, minlength=num_users)
    return Histories(
        indptr=torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)),
        items=torch.from_numpy(item[order].astype(np.int64)),
        ratings=data.rating[torch.from_numpy(index[order])].float(),
        num_items=data.num_items,
    )


# --- The ranking task ---------------------------------------------------------------------------------


@dataclass
class RankingTask:
    """Who is scored on what: ``users`` (those with something relevant), their ``relevant`` items
    (a (M, I) boolean CSR), the ``history`` models read, and which items may be recommended at all."""

    name: str
    history: Histories
    users: torch.Tensor  # (M,) int64
    relevant: sp.csr_matrix  # (M, I) bool
    recommendable: torch.Tensor  # (I,) bool: items seen in the history

    def exclude(self, x: torch.Tensor) -> torch.Tensor:
        """(B, I) True where an item is no candidate: rated already, or never seen in training."""
        return (x > 0) | ~self.recommendable


def ranking_task(
    data: RatingsData, history_index: np.ndarray, heldout_index: np.ndarray, name: str
) -> RankingTask:
    """The issue's rules: relevant = held-out ratings >= 4 stars on items seen in the history."""
    history = histories(data, history_index)
    recommendable = history.item_counts() > 0
    heldout = np.asarray(heldout_index)
    user, item = data.user.numpy()[heldout], data.item.numpy()[heldout]
    keep = (data.rating.numpy()[heldout] >= RELEVANT_STARS) & recommendable.numpy()[item]
    liked = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (user[keep], item[keep])),
        shape=(data.num_users, data.num_items),
    )
    users = np.flatnonzero(np.diff(liked.indptr) > 0)
    return RankingTask(name, history, torch.from_numpy(users), liked[users], recommendable)


Scorer = Callable[[torch.Tensor], torch.Tensor]  # (B, I) stars -> (B, I) scores


@torch.no_grad()
def evaluate_ranking(
    score: Scorer, task: RankingTask, k: int = 10, batch_size: int = 256, prefix: str = ""
) -> dict[str, float]:
    """HR, NDCG, recall, precision, MAP at ``k`` and coverage of ``score`` on ``task`` (users in batches).

    Coverage is the share of the recommendable items (seen in training) that appear in some list."""
    tops = []
    for start in range(0, len(task.users), batch_size):
        x = task.history.matrix(task.users[start : start + batch_size])
        tops.append(top_k(score(x).float().cpu(), k, exclude=task.exclude(x)))
    top = torch.cat(tops)
    return ranking_metrics(top, task.relevant, num_items=int(task.recommendable.sum()), prefix=prefix)


def rmse(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], data: RatingsData, index: np.ndarray
) -> float:
    """Root mean squared error in stars of ``predict(users, items)`` on the ratings ``index``."""
    index = torch.from_numpy(np.asarray(index))
    errors = []
    with torch.no_grad():
        for chunk in index.split(65536):
            pred = predict(data.user[chunk], data.item[chunk]).float().cpu()
            errors.append((pred - data.rating[chunk]) ** 2)
    return math.sqrt(float(torch.cat(errors).mean()))
