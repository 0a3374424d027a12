"""Serve a release over HTTP: a page with a text box, and a JSON API.

    python -m projects.sentiment_analyzer serve --release runs/sentiment_analyzer/imdb-nbsvm/release

- ``GET /``: a page where you type or paste a review and see its sentiment as bars;
- ``POST /predict`` with ``{"text": "..."}`` -> ``{"label": "pos", "probability": 0.97, "probabilities":
  {"neg": 0.03, "pos": 0.97}, "notes": [...], "model": {...}}``; with ``{"texts": [...]}`` (at most
  ``--max-texts``) -> ``{"predictions": [...one such answer per text...], "model": {...}}``;
- ``GET /health``: ``{"status": "ok", "model": {...the release's metadata...}}``.

Bad requests get a JSON error with the reason (dlkit.serve): 415 for a content type other than
application/json, 400 for a body that is not JSON (or not UTF-8), 422 for JSON without a string "text"
(or a list "texts"), an empty or whitespace-only text, or too many texts; 413 for a body over
``--max-body-kb``. A text over ``--max-chars`` is cut, with a note. The model is loaded once when the
server starts; concurrent requests go through it together (:class:`dlkit.serve.MicroBatcher`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dlkit.config import parse_config
from dlkit.serve import BatchedService, create_app, html_page
from projects.sentiment_analyzer.predict import DEFAULT_MAX_CHARS, Predictor, TextRejected

__all__ = [
    "PAGE",
    "ServeConfig",
    "app_from_env",
    "build_app",
    "main",
    "read_json_request",
    "sentiment_service",
]

DEFAULT_MAX_BODY_BYTES = 256 * 1024  # a long review is 15 kB; a batch of 64 of them fits
DEFAULT_MAX_TEXTS = 64

FORM = """
<form id="review-form">
  <label for="text">Review</label>
  <textarea id="text" name="text" rows="8" maxlength="200000"
    placeholder="Paste a movie review, e.g. The plot was thin, but the acting was wonderful."></textarea>
  <button type="submit" id="submit">Classify</button>
</form>
<ul id="notes"></ul>
"""

SCRIPT = """
const form = document.getElementById("review-form");
const text = document.getElementById("text");
const result = document.getElementById("result");
const notes = document.getElementById("notes");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  result.textContent = "Classifying...";
  notes.replaceChildren();
  try {
    const response = await fetch("predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text: text.value}),
    });
    const body = await response.json();
    if (!response.ok) { showError(result, body.error + ": " + body.detail); return; }
    const bars = Object.entries(body.probabilities)
      .map(([label, probability]) => ({label, probability}))
      .sort((a, b) => b.probability - a.probability);
    showBars(result, bars);
    result.dataset.label = body.label;
    for (const note of body.notes) {
      const li = document.createElement("li"); li.className = "note"; li.textContent = note; notes.append(li);
    }
  } catch (error) {
    showError(result, "The server did not answer: " + error);
  }
});
"""

PAGE = html_page(
    title="Sentiment analyzer",
    intro="Type or paste a movie review: the model says whether it is positive or negative. "
    "Nothing is stored.",
    form=FORM,
    script=SCRIPT,
)


async def read_json_request(request: Request) -> Any:
    """The JSON a request carries: 415 unless its content type is application/json (or +json), 400 for
    a body that is not UTF-8 JSON. (A candidate for dlkit.serve, next to read_image_request.)"""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(
            415,
            f'content type {media or "(none)"} is not accepted: send application/json like {{"text": "..."}}',
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(400, 'the body is empty: send JSON like {"text": "..."}')
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise HTTPException(400, f"the body is not UTF-8 (byte {e.start}): JSON must be UTF-8") from e
    except json.JSONDecodeError as e:
        raise HTTPException(
            400, f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e


def texts_of(payload: Any, max_texts: int) -> tuple[list[Any], bool]:
    """(the texts, whether it was a batch) of a request's JSON; 422 with the reason otherwise."""
    if not isinstance(payload, dict) or ("text" in payload) == ("texts" in payload):
        raise HTTPException(
            422, 'send a JSON object with either "text": "a review" or "texts": ["one", "another"]'
        )
    if "text" in payload:
        return [payload["text"]], False
    texts = payload["texts"]
    if not isinstance(texts, list) or not texts:
        raise HTTPException(422, '"texts" must be a non-empty list of strings')
    if len(texts) > max_texts:
        raise HTTPException(422, f'"texts" holds {len(texts)} texts; at most {max_texts} per request')
    return texts, True


def sentiment_service(
    predictor: Predictor, max_batch: int = 64, max_chars: int = DEFAULT_MAX_CHARS
) -> BatchedService[str, torch.Tensor]:
    """The predictor with a micro-batcher: concurrent requests run through the model as one batch."""
    predictor.max_chars = max_chars
    return BatchedService(predictor, lambda texts: list(predictor.probabilities(texts)), max_batch)


def build_app(
    release_dir: str | Path,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_texts: int = DEFAULT_MAX_TEXTS,
    device: str = "cpu",
    max_batch: int = 64,
) -> FastAPI:
    """The app serving ``release_dir``; its model loads when the app starts, not here."""
    release_dir = Path(release_dir)
    app = create_app(
        title="Sentiment analyzer",
        load=lambda: sentiment_service(Predictor.from_release(release_dir, device), max_batch, max_chars),
        page_html=PAGE,
        max_body_bytes=max_body_bytes,
    )

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        texts, batch = texts_of(await read_json_request(request), max_texts)
        service: BatchedService[str, torch.Tensor] = request.app.state.model
        prepared = []
        for i, text in enumerate(texts):
            try:
                prepared.append(await run_in_threadpool(service.predictor.prepare, text))
            except TextRejected as e:
                raise HTTPException(e.status, f"texts[{i}]: {e.detail}" if batch else e.detail) from e
        probabilities = await asyncio.gather(*(service.batcher.submit(text) for text, _ in prepared))
        answers = [
            service.predictor.answer(p, notes) for p, (_, notes) in zip(probabilities, prepared, strict=True)
        ]
        model = service.predictor.name
        return {"predictions": answers, "model": model} if batch else {**answers[0], "model": model}

    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory projects.sentiment_analyzer.serve:app_from_env`` (several workers)."""
    env = os.environ.get
    return build_app(
        os.environ["SENTIMENT_RELEASE"],
        max_body_bytes=int(env("SENTIMENT_MAX_BODY", DEFAULT_MAX_BODY_BYTES)),
        max_chars=int(env("SENTIMENT_MAX_CHARS", DEFAULT_MAX_CHARS)),
        max_texts=int(env("SENTIMENT_MAX_TEXTS", DEFAULT_MAX_TEXTS)),
        device=env("SENTIMENT_DEVICE", "cpu"),
        max_batch=int(env("SENTIMENT_MAX_BATCH", 64)),
    )


@dataclass
class ServeConfig:
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    release: str = field(default="", metadata={"help": "the release folder (required)"})
    host: str = field(default="127.0.0.1", metadata={"help": "0.0.0.0 to be reachable from other machines"})
    port: int = 8000
    workers: int = field(default=1, metadata={"help": "processes, each with its own copy of the model"})
    max_body_kb: float = 256.0
    max_chars: int = field(default=DEFAULT_MAX_CHARS, metadata={"help": "longer texts are cut, with a note"})
    max_texts: int = field(default=DEFAULT_MAX_TEXTS, metadata={"help": 'most texts in one "texts" request'})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, or auto"})
    max_batch: int = field(default=64, metadata={"help": "most concurrent texts run as one batch"})
    log_level: str = "info"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until Ctrl+C."""
    import uvicorn

    cfg = parse_config(ServeConfig, argv)
    if not cfg.release:
        raise SystemExit(
            "serve needs --release (a folder written by `python -m projects.sentiment_analyzer export`)"
        )
    os.environ["SENTIMENT_RELEASE"] = cfg.release  # the workers build their app from these
    os.environ["SENTIMENT_MAX_BODY"] = str(int(cfg.max_body_kb * 1024))
    os.environ["SENTIMENT_MAX_CHARS"] = str(cfg.max_chars)
    os.environ["SENTIMENT_MAX_TEXTS"] = str(cfg.max_texts)
    os.environ["SENTIMENT_DEVICE"] = cfg.device
    os.environ["SENTIMENT_MAX_BATCH"] = str(cfg.max_batch)
    uvicorn.run(
        "projects.sentiment_analyzer.serve:app_from_env", factory=True, host=cfg.host, port=cfg.port,
        workers=cfg.workers, log_level=cfg.log_level,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
