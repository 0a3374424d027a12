"""Serve a release over HTTP: a page where a visitor finds movies, marks a few and gets recommendations.

    python -m projects.recommendation_system serve \
        --release runs/recommendation_system/movielens_small-ranker/release

- ``GET /``: the page: search titles, mark the ones you liked, see what to watch next (and, per movie,
  "more like this");
- ``GET /movies/search?q=star+wars&limit=10`` -> ``{"query", "movies": [{movie_id, title, year, label,
  genres, ratings}]}``;
- ``GET /users/{id}/recommendations?k=10`` -> ``{"user", "recommendations": [... movie, "score"]}``,
  what the user rated left out;
- ``GET /movies/{id}/similar?k=10`` -> ``{"movie", "similar": [...]}``;
- ``POST /recommendations`` with ``{"liked": [movie ids], "k": 10}`` (cold start) -> ``{"liked",
  "recommendations": [...]}``, the liked movies left out;
- ``GET /health``: what the release is (model, data, test metrics), never where its files are.

Errors are JSON with the reason (:mod:`dlkit.serve`): 404 for a user or movie id the release does not
know (in the path or in ``liked``), 422 for a k outside 1..``--max-k``, an empty or too long ``liked``
list (over ``--max-liked``), ids that are not integers, or a search query that is empty or over 200
characters; 415/400 for a body that is not JSON; 413 for a body over ``--max-body-kb``. Concurrent
requests are scored together by one batched pass through the model (``MicroBatcher``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from fastapi import FastAPI, HTTPException, Path, Query, Request

from dlkit import project
from dlkit.config import flag
from dlkit.serve import BatchedService, create_app, html_page, read_json_request
from projects.recommendation_system.predict import MAX_K, Recommender, UnknownId

__all__ = ["ServeConfig", "build_app", "main"]

MAX_QUERY = 200
K = Annotated[int, Query(description="how many movies")]


@dataclass
class ServeConfig(project.ServeConfig):
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    max_body_kb: int = flag(16, help="largest request body accepted (413 above it)", min=1)
    max_liked: int = flag(100, help="most movies in one POST /recommendations 'liked' list", min=1)
    max_k: int = flag(MAX_K, help="the largest k a request may ask for", min=1, max=1000)


FORM = """
<style>
.search { display: flex; gap: .5rem; } .search input { flex: 1; } .search button { margin-top: 0; }
.movies { list-style: none; margin: .75rem 0 0; padding: 0; }
.movies li { display: flex; align-items: center; justify-content: space-between; gap: .75rem;
             padding: .45rem 0; border-top: 1px solid var(--line); }
.movies li:first-child { border-top: 0; }
.movie .title { font-weight: 600; } .movie .meta { color: var(--muted); font-size: .88rem; }
.movies button { margin-top: 0; padding: .3rem .8rem; font-size: .9rem; white-space: nowrap; flex: none; }
.movies button.secondary, .chip button { background: #eef3fc; color: var(--accent); }
.liked { display: flex; flex-wrap: wrap; gap: .4rem; margin: .9rem 0 0; min-height: 1.5rem; }
.chip { background: #eef3fc; border-radius: 999px; padding: .2rem .3rem .2rem .75rem; font-size: .9rem;
        display: inline-flex; align-items: center; gap: .3rem; }
.chip button { margin: 0; padding: 0 .45rem; border-radius: 999px; font-weight: 700; }
.hint { color: var(--muted); font-size: .92rem; margin: .5rem 0 0; }
#result h2 { font-size: 1.05rem; margin: 0 0 .25rem; }
</style>
<form id="search-form" autocomplete="off">
  <label class="field" for="query">Find movies you liked</label>
  <div class="search">
    <input type="text" id="query" name="q" maxlength="200" placeholder="e.g. Toy Story, Matrix, Amelie">
    <button type="submit" id="search">Search</button>
  </div>
</form>
<ul id="found" class="movies" aria-label="search results"></ul>
<div id="liked" class="liked" aria-label="movies you liked"></div>
<p class="hint" id="hint">Mark a few movies you liked, then ask for recommendations.</p>
<button type="button" id="recommend" disabled>Recommend movies</button>
"""

SCRIPT = """
const found = document.getElementById("found"), likedBox = document.getElementById("liked");
const result = document.getElementById("result"), recommendButton = document.getElementById("recommend");
const liked = new Map();  // movie_id -> label

function el(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}
async function getJSON(response) {
  const body = await response.json().catch(() => ({detail: "the server answered " + response.status}));
  if (!response.ok) throw new Error(body.detail || body.error || ("HTTP " + response.status));
  return body;
}
function movieItem(movie, buttonText, onClick, secondary) {
  const li = el("li"), info = el("div", "movie");
  info.append(el("div", "title", movie.label));
  const meta = [movie.genres.join(", "), movie.ratings + " ratings"].filter(Boolean).join(" \u00b7 ");
  info.append(el("div", "meta", meta));
  li.append(info);
  if (buttonText) {
    const b = el("button", secondary ? "secondary" : null, buttonText);
    b.type = "button"; b.addEventListener("click", onClick); li.append(b);
  }
  return li;
}
function drawLiked() {
  likedBox.replaceChildren();
  for (const [id, label] of liked) {
    const chip = el("span", "chip", label), x = el("button", null, "\u00d7");
    x.type = "button"; x.title = "remove"; x.setAttribute("aria-label", "remove " + label);
    x.addEventListener("click", () => { liked.delete(id); drawLiked(); });
    chip.append(x); likedBox.append(chip);
  }
  recommendButton.disabled = liked.size === 0;
}
document.getElementById("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = document.getElementById("query").value.trim();
  found.replaceChildren();
  if (!q) return;
  try {
    const body = await getJSON(await fetch("movies/search?limit=8&q=" + encodeURIComponent(q)));
    if (!body.movies.length) found.append(el("li", "meta", "No title matches \\u201c" + q + "\\u201d."));
    for (const m of body.movies)
      found.append(movieItem(m, liked.has(m.movie_id) ? "Liked" : "I liked it", (e) => {
        liked.set(m.movie_id, m.label); e.target.textContent = "Liked"; drawLiked();
      }));
  } catch (err) { found.append(el("li", "error", err.message)); }
});
function showList(heading, movies) {
  result.replaceChildren(el("h2", null, heading));
  const list = el("ul", "movies"); list.id = "recommendations";
  for (const m of movies)
    list.append(movieItem(m, "More like this", () => similar(m), true));
  result.append(list);
}
async function similar(movie) {
  try {
    const body = await getJSON(await fetch("movies/" + movie.movie_id + "/similar?k=10"));
    showList("More like " + movie.label, body.similar);
  } catch (err) { showError(result, err.message); }
}
recommendButton.addEventListener("click", async () => {
  recommendButton.disabled = true;
  try {
    const response = await fetch("recommendations", {method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({liked: [...liked.keys()], k: 10})});
    const body = await getJSON(response);
    showList("Recommended for you", body.recommendations);
  } catch (err) { showError(result, err.message); }
  recommendButton.disabled = liked.size === 0;
});
"""


def page(describe: dict[str, Any]) -> str:
    data = describe.get("dataset", "MovieLens")
    return html_page(
        title="Movie recommender",
        intro="Search for movies you liked, mark a few, and see what people with the same taste watched.",
        form=FORM,
        script=SCRIPT,
        footer=f"{describe['name']} trained on {data}.",
    )


def _k(cfg: ServeConfig, k: int) -> int:
    if not 1 <= k <= cfg.max_k:
        raise HTTPException(422, f"k must be between 1 and {cfg.max_k}, not {k}")
    return k


def build_app(cfg: ServeConfig) -> FastAPI:
    """The app for ``cfg.release``: the predictor loads once; concurrent requests are batched."""
    recommender = Recommender.from_release(cfg.release, cfg.device)
    assert isinstance(recommender, Recommender)

    def batch(requests: list[tuple[torch.Tensor, int]]) -> list[list[dict[str, Any]]]:
        rows = torch.stack([row for row, _ in requests])
        k = max(k for _, k in requests)
        return [movies[:k_i] for movies, (_, k_i) in zip(recommender.top(rows, k), requests, strict=True)]

    def load() -> BatchedService:
        return BatchedService(recommender, batch, cfg.max_batch)

    app = create_app(
        title="Movie recommender", load=load, page_html=page(recommender.describe()),
        max_body_bytes=cfg.max_body_kb * 1024,
    )  # fmt: skip

    async def ranked(request: Request, row: torch.Tensor, k: int) -> list[dict[str, Any]]:
        return await request.app.state.model.batcher.submit((row, k))

    def known(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except UnknownId as e:
            raise HTTPException(404, str(e)) from e

    @app.get("/movies/search")
    def search(q: Annotated[str, Query(max_length=MAX_QUERY)], limit: K = 10) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(422, "q is empty: send words of a title, e.g. ?q=toy+story")
        return {"query": q, "movies": recommender.search(q, _k(cfg, limit))}

    @app.get("/users/{user_id}/recommendations")
    async def for_user(request: Request, user_id: Annotated[int, Path()], k: K = 10) -> dict[str, Any]:
        row = known(recommender.user_row, user_id)
        return {"user": user_id, "recommendations": await ranked(request, row, _k(cfg, k))}

    @app.get("/movies/{movie_id}/similar")
    async def similar(request: Request, movie_id: Annotated[int, Path()], k: K = 10) -> dict[str, Any]:
        item = known(recommender.item_of, movie_id)
        row = recommender.liked_row([movie_id])
        return {"movie": recommender.movie(item), "similar": await ranked(request, row, _k(cfg, k))}

    @app.post("/recommendations")
    async def for_liked(request: Request) -> dict[str, Any]:
        body = await read_json_request(request, example='{"liked": [1, 260], "k": 10}')
        liked, k = _liked_request(body, cfg)
        row = known(recommender.liked_row, liked)
        return {"liked": liked, "recommendations": await ranked(request, row, k)}

    return app


def _liked_request(body: Any, cfg: ServeConfig) -> tuple[list[int], int]:
    """The liked movie ids and k of a POST /recommendations body, or an HTTPException 422 saying what
    is wrong."""
    example = 'send {"liked": [1, 260], "k": 10}'
    if not isinstance(body, dict) or "liked" not in body:
        raise HTTPException(422, f"the body needs a list 'liked' of movie ids: {example}")
    liked, k = body["liked"], body.get("k", 10)
    if not isinstance(liked, list) or not liked:
        raise HTTPException(422, f"'liked' must be a non-empty list of movie ids: {example}")
    if len(liked) > cfg.max_liked:
        raise HTTPException(422, f"'liked' holds {len(liked)} movies; the limit is {cfg.max_liked}")
    if not all(isinstance(m, int) and not isinstance(m, bool) for m in liked):
        raise HTTPException(422, f"every movie id in 'liked' must be an integer: {example}")
    if not isinstance(k, int) or isinstance(k, bool):
        raise HTTPException(422, f"k must be an integer between 1 and {cfg.max_k}")
    return list(dict.fromkeys(liked)), _k(cfg, k)


def main(argv: Sequence[str] | None = None) -> int:
    return project.serve_main(argv, ServeConfig, "projects.recommendation_system.serve:build_app")
