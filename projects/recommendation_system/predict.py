"""Recommendations from a release folder, for a known user, for a visitor's liked movies, or like a movie.

    python -m projects.recommendation_system predict --release DIR --user 15            # top 10 for user 15
    python -m projects.recommendation_system predict --release DIR --liked "Toy Story" "Matrix, The"
    python -m projects.recommendation_system predict --release DIR --similar "Heat"      # movies like Heat
    python -m projects.recommendation_system predict --release DIR --search "star wars"  # find titles
    ... --k 20 --json

Every list leaves out what the user has already rated (or marked as liked) and shows titles with their
year, never bare ids. A visitor's liked movies are read as five-star ratings; "similar to a movie" is
what the model recommends to someone whose only rating is five stars for that movie. Titles are
matched case- and accent-blind, whole title first, then the start of a title, then any part (the more
rated first), and predict prints which movie each one matched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit import project
from dlkit.config import flag, parse_config
from dlkit.errors import UserError
from dlkit.ranking import top_k
from projects.recommendation_system.data import Catalogue
from projects.recommendation_system.models import build_model

__all__ = ["LIKED_STARS", "MAX_K", "PredictConfig", "Recommender", "ServingModel", "UnknownId", "main"]

LIKED_STARS = 5.0  # what a visitor's "I liked it" means to the model
MAX_K = 100


class UnknownId(LookupError):
    """A user or movie id the release does not know (HTTP 404)."""


class ServingModel(nn.Module):
    """What a release holds as tensors: the scorer, each known user's ratings (CSR by user), and the
    items' popularity (how many users rated each, for search and the cold-start fallback)."""

    def __init__(self, scorer: nn.Module, num_users: int, num_ratings: int, num_items: int) -> None:
        super().__init__()
        self.scorer = scorer
        self.register_buffer("user_indptr", torch.zeros(num_users + 1, dtype=torch.int64))
        self.register_buffer("user_items", torch.zeros(num_ratings, dtype=torch.int64))
        self.register_buffer("user_ratings", torch.zeros(num_ratings))
        self.register_buffer("popularity", torch.zeros(num_items))

    def forward(self, stars: torch.Tensor) -> torch.Tensor:
        return self.scorer(stars)


def build_serving_model(metadata: dict[str, Any]) -> ServingModel:
    sizes = metadata["sizes"]
    return ServingModel(
        build_model(metadata["architecture"]), sizes["users"], sizes["ratings"], sizes["items"]
    )


class Recommender(project.ReleasePredictor):
    """A release loaded once: top-k lists for known users, liked movies and similar movies, and search."""

    model: ServingModel

    @staticmethod
    def build_model(metadata: dict[str, Any]) -> nn.Module:
        return build_serving_model(metadata)

    def __init__(self, model: nn.Module, metadata: dict[str, Any], device: torch.device) -> None:
        super().__init__(model, metadata, device)
        items = metadata["items"]
        self.catalogue = Catalogue(items["titles"], items["years"], items["genres"], items["movie_ids"])
        self.popularity = self.model.popularity.cpu()
        self.recommendable = self.popularity > 0
        self.num_users = len(self.model.user_indptr) - 1

    @property
    def name(self) -> str:
        return str(self.metadata["architecture"]["model"])

    def describe(self) -> dict[str, Any]:
        keep = ("dataset", "metrics", "preprocessing", "num_parameters", "created", "torch_version")
        described = {k: self.metadata[k] for k in keep if k in self.metadata}
        sizes = self.metadata["sizes"]
        return {
            "name": self.name,
            "users": sizes["users"],
            "movies": sizes["items"],
            "recommendable_movies": int(self.recommendable.sum()),
            **described,
        }

    # --- Inputs: a row of stars per request ---------------------------------------------------------

    def user_row(self, user_id: int) -> torch.Tensor:
        """(I,) the stars of MovieLens user ``user_id`` (users are numbered 1..N in MovieLens)."""
        index = int(user_id) - 1
        if not 0 <= index < self.num_users:
            raise UnknownId(f"user {user_id} is not in this release: its users are 1 to {self.num_users}")
        start, end = self.model.user_indptr[index : index + 2].tolist()
        row = torch.zeros(len(self.catalogue))
        row[self.model.user_items[start:end].cpu()] = self.model.user_ratings[start:end].cpu()
        return row

    def item_of(self, movie_id: int) -> int:
        item = self.catalogue.index_of(movie_id)
        if item is None:
            raise UnknownId(f"movie {movie_id} is not in the catalogue (search for a title to find its id)")
        return item

    def liked_row(self, movie_ids: Sequence[int]) -> torch.Tensor:
        """(I,) a visitor who gave five stars to each of ``movie_ids``."""
        row = torch.zeros(len(self.catalogue))
        row[[self.item_of(m) for m in movie_ids]] = LIKED_STARS
        return row

    # --- Scoring -------------------------------------------------------------------------------------

    @torch.no_grad()
    def top(self, rows: torch.Tensor, k: int) -> list[list[dict[str, Any]]]:
        """The ``k`` best movies for each row of (B, I) stars, rated ones and never-rated ones left out."""
        scores = self.model(rows.to(self.device)).float().cpu()
        exclude = (rows > 0) | ~self.recommendable
        best = top_k(scores, k, exclude=exclude)
        return [
            [self.movie(i, float(scores[r, i])) for i in row if i >= 0] for r, row in enumerate(best.tolist())
        ]

    def movie(self, item: int, score: float | None = None) -> dict[str, Any]:
        """What a person or a page needs to show a movie."""
        c = self.catalogue
        out: dict[str, Any] = {
            "movie_id": c.movie_ids[item],
            "title": c.titles[item],
            "year": c.years[item],
            "label": c.label(item),
            "genres": [g for g in c.genres[item].split("|") if g and g != "(no genres listed)"],
            "ratings": int(self.popularity[item]),
        }
        if score is not None:
            out["score"] = round(score, 6)
        return out

    def for_user(self, user_id: int, k: int = 10) -> list[dict[str, Any]]:
        return self.top(self.user_row(user_id)[None], k)[0]

    def for_liked(self, movie_ids: Sequence[int], k: int = 10) -> list[dict[str, Any]]:
        return self.top(self.liked_row(movie_ids)[None], k)[0]

    def similar(self, movie_id: int, k: int = 10) -> list[dict[str, Any]]:
        return self.top(self.liked_row([movie_id])[None], k)[0]

    def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        return [self.movie(i) for i in self.catalogue.search(query, limit, self.popularity.tolist())]

    def match_title(self, query: str) -> int:
        """The movie id a typed title means (see the module docstring), or a UserError."""
        found = self.catalogue.search(query, 1, self.popularity.tolist())
        if not found:
            raise UserError(f"no movie title holds {query!r}: try --search with fewer words")
        return self.catalogue.movie_ids[found[0]]


# --- The command ------------------------------------------------------------------------------------


@dataclass
class PredictConfig(project.PredictConfig):
    """Recommend movies with a release folder (written by `export`)."""

    user: int = flag(0, help="a MovieLens user id: their top-k, what they rated left out")
    liked: tuple[str, ...] = flag((), help="titles a new user liked: recommendations from them")
    similar: str = flag("", help="a title: movies like it")
    search: str = flag("", help="words of a title: the matching movies and their ids")
    k: int = flag(10, help="how many movies to list", min=1, max=MAX_K)


def _print_list(heading: str, movies: list[dict[str, Any]]) -> None:
    print(heading)
    for rank, m in enumerate(movies, 1):
        genres = ", ".join(m["genres"])
        print(f"  {rank:2d}. {m['label']}" + (f"  [{genres}]" if genres else ""))


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(PredictConfig, argv)
    asked = sum(bool(x) for x in (cfg.user, cfg.liked, cfg.similar, cfg.search))
    if asked != 1:
        raise UserError(
            "say what to recommend: one of --user ID, --liked TITLE..., --similar TITLE, --search WORDS"
        )
    rec = Recommender.from_release(Path(cfg.release) if cfg.release else "", cfg.device)
    assert isinstance(rec, Recommender)
    try:
        if cfg.search:
            result: dict[str, Any] = {"search": cfg.search, "movies": rec.search(cfg.search, cfg.k)}
            heading = f"movies matching {cfg.search!r}:"
        elif cfg.user:
            result = {"user": cfg.user, "recommendations": rec.for_user(cfg.user, cfg.k)}
            heading = f"top {cfg.k} for user {cfg.user} ({rec.name}):"
        elif cfg.liked:
            ids = [rec.match_title(t) for t in cfg.liked]
            for typed, movie_id in zip(cfg.liked, ids, strict=True):
                print(f"{typed!r} -> {rec.movie(rec.item_of(movie_id))['label']}", file=sys.stderr)
            result = {"liked": ids, "recommendations": rec.for_liked(ids, cfg.k)}
            heading = f"top {cfg.k} for someone who liked {len(ids)} movie(s) ({rec.name}):"
        else:
            movie_id = rec.match_title(cfg.similar)
            result = {"movie": rec.movie(rec.item_of(movie_id)), "similar": rec.similar(movie_id, cfg.k)}
            heading = f"movies like {result['movie']['label']} ({rec.name}):"
    except UnknownId as e:
        raise UserError(str(e)) from e
    if cfg.json:
        print(json.dumps(result))
    else:
        _print_list(heading, result.get("movies") or result.get("recommendations") or result["similar"])
    return 0
