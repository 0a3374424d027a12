"""Serve a release over HTTP: a page where you paste a review, and a JSON API.

    python -m projects.sentiment_analyzer serve --release runs/sentiment_analyzer/imdb-nbsvm/release

- ``GET /``: a page with a text box; it shows the sentiment, how sure the model is, and (n-gram models)
  the review with the words that pushed the decision highlighted, green for positive, red for negative;
- ``POST /predict`` with ``{"text": "..."}`` -> ``{"label": "pos", "sentiment": "positive",
  "probability": 0.97, "probabilities": {"neg": 0.03, "pos": 0.97}, "notes": [...], "evidence":
  {"positive": [{"ngram", "contribution", "spans"}...], "negative": [...], "bias", "score"}, "model":
  "nbsvm"}``; with ``{"texts": [...]}`` (at most ``--max-texts``) -> ``{"predictions": [...], "model"}``.
  MiniLM's evidence is ``{"explanation": ...}``: it has no exact per-word attribution;
- ``GET /health``: ``{"status": "ok", "model": {...what a client needs; no server paths...}}``.

Bad requests get a JSON error with the reason (:mod:`dlkit.serve`): 415 for a content type other than
application/json; 400 for a body that is not UTF-8 JSON, nests too deep or holds a number too long to
read; 422 for JSON without a string "text" (or a list "texts"), an empty or whitespace-only text, or
too many texts; 413 for a body over ``--max-body-kb``. A text over ``--max-chars`` is cut, with a note.
The model loads once per worker; concurrent requests run through it together (``MicroBatcher``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dlkit import project
from dlkit.config import flag
from dlkit.serve import BatchedService, create_app, html_page, read_json_request
from projects.sentiment_analyzer.predict import DEFAULT_MAX_CHARS, SentimentPredictor, TextRejected

__all__ = ["PAGE", "ServeConfig", "build_app", "main", "texts_of"]


@dataclass
class ServeConfig(project.ServeConfig):
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    max_chars: int = flag(DEFAULT_MAX_CHARS, help="longer texts are cut, with a note", min=1)
    max_texts: int = flag(64, help='most texts in one {"texts": [...]} request', min=1)
    top_words: int = flag(5, help="words or phrases returned that pushed each way (0: none)", min=0, max=50)


EXAMPLES = {
    "a rave": "A wonderful, moving film. The cast is superb and the ending is beautiful; I loved every "
    "minute of it and would watch it again.",
    "a pan": "What a waste of two hours. The plot is dull, the acting is wooden and the jokes are stupid. "
    "Not even the music could save this boring mess.",
    "a mixed one": "The plot was thin and the first hour dragged, but the acting was wonderful and the "
    "last scene is unforgettable.",
}

FORM = """
<style>
.actions { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; margin-top: .75rem; }
.actions button#submit { margin-top: 0; }
.examples { color: var(--muted); font-size: .92rem; }
.examples button { background: #eef3fc; color: var(--accent); padding: .2rem .65rem; margin: 0 0 0 .35rem;
                   font-weight: 500; font-size: .9rem; border-radius: 999px; }
.verdict.positive { color: var(--good); } .verdict.negative { color: var(--bad); }
.verdict .sure { color: var(--muted); font-weight: 400; font-size: 1rem; margin-left: .4rem; }
#result h2 { font-size: 1rem; margin: 1.1rem 0 .4rem; }
.review { white-space: pre-wrap; background: #fafbfd; border: 1px solid var(--line); border-radius: 8px;
          padding: .75rem .9rem; max-height: 18rem; overflow: auto; margin: 0; }
mark { border-radius: 3px; padding: 0 .1rem; color: inherit; }
mark.pos { background: #cdeed6; } mark.neg { background: #f9d3cf; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: .25rem 1.25rem; margin-top: .6rem; }
.sides h3 { font-size: .9rem; margin: .2rem 0; font-weight: 600; }
.sides ul { list-style: none; margin: 0; padding: 0; }
.sides li { display: flex; justify-content: space-between; gap: .5rem; padding: .1rem 0; }
.sides .share { font-variant-numeric: tabular-nums; color: var(--muted); }
.sides .none { color: var(--muted); }
#result ul.notes { margin: .75rem 0 0; padding-left: 1.1rem; }
</style>
<form id="review-form">
  <label class="field" for="text">Your review</label>
  <textarea id="text" name="text" rows="8" maxlength="200000"
    placeholder="Paste a movie review, e.g. The plot was thin, but the acting was wonderful."></textarea>
  <div class="actions">
    <button type="submit" id="submit">Analyze sentiment</button>
    <span class="examples">or try an example:__EXAMPLES__</span>
  </div>
</form>
"""

SCRIPT = """
const form = document.getElementById("review-form");
const text = document.getElementById("text");
const submit = document.getElementById("submit");
const result = document.getElementById("result");
const NAMES = {pos: "Positive", neg: "Negative"};
const signed = (x) => (x > 0 ? "+" : "") + x.toFixed(2);
// "cast ." -> "cast.": n-grams join words and punctuation marks with spaces
const phrase = (ngram) => ngram.replace(/ ([.,!?;:)])/g, "$1").replace(/([(]) /g, "$1");

function el(tag, className, content) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  return node;
}

// The review with the evidence's spans marked; spans count code points, as Python does.
function highlighted(review, evidence) {
  const chars = Array.from(review);
  const owner = new Array(chars.length).fill(null);
  const items = [...evidence.positive.map(e => ({...e, cls: "pos"})),
                 ...evidence.negative.map(e => ({...e, cls: "neg"}))];
  items.sort((a, b) => Math.abs(a.contribution) - Math.abs(b.contribution));  // strongest paints last
  for (const item of items)
    for (const [start, end] of item.spans)
      for (let i = start; i < Math.min(end, chars.length); i++) owner[i] = item;
  const box = el("p", "review");
  let i = 0;
  while (i < chars.length) {
    let j = i;
    while (j < chars.length && owner[j] === owner[i]) j++;
    const piece = chars.slice(i, j).join("");
    if (owner[i] === null) { box.append(piece); }
    else {
      const mark = el("mark", owner[i].cls, piece);
      mark.title = phrase(owner[i].ngram) + ": " + signed(owner[i].contribution);
      box.append(mark);
    }
    i = j;
  }
  return box;
}

function side(title, entries) {
  const column = el("div");
  column.append(el("h3", null, title));
  const list = el("ul");
  for (const e of entries) {
    const li = el("li");
    li.append(el("span", null, phrase(e.ngram)),
              el("span", "share", signed(e.contribution)));
    list.append(li);
  }
  if (!entries.length) list.append(el("li", "none", "none"));
  column.append(list);
  return column;
}

function show(body, review) {
  result.replaceChildren();
  result.dataset.label = body.label;
  const verdict = el("p", "verdict " + body.sentiment, NAMES[body.label] || body.sentiment);
  verdict.append(el("span", "sure", (100 * body.probability).toFixed(1) + "% sure"));
  const bars = el("div", "bars");
  showBars(bars, Object.entries(body.probabilities)
    .map(([label, probability]) => ({label: NAMES[label] || label, probability}))
    .sort((a, b) => b.probability - a.probability));
  result.append(verdict, bars);
  const evidence = body.evidence || {};
  if (evidence.positive) {
    result.append(el("h2", null, "Why: the words that pushed the decision"), highlighted(review, evidence));
    const sides = el("div", "sides");
    sides.append(side("Towards positive", evidence.positive), side("Towards negative", evidence.negative));
    result.append(sides);
  } else if (evidence.explanation) {
    result.append(el("h2", null, "Why"), el("p", "note explanation", evidence.explanation));
  }
  if (body.notes.length) {
    const notes = el("ul", "notes");
    for (const note of body.notes) notes.append(el("li", "note", note));
    result.append(notes);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const review = text.value;
  submit.disabled = true;
  result.replaceChildren(el("p", "note", "Reading the review..."));
  delete result.dataset.label;
  try {
    const response = await fetch("predict", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({text: review}),
    });
    const body = await response.json();
    if (!response.ok) {
      const message = body.detail || body.error;
      showError(result, message.charAt(0).toUpperCase() + message.slice(1));
    }
    else show(body, review);
  } catch (error) {
    showError(result, "The server did not answer: " + error);
  } finally {
    submit.disabled = false;
  }
});

// The footer says which model answers and how well it did on its test reviews (from /health).
fetch("health").then((r) => r.json()).then((health) => {
  const model = health.model, test = (model.metrics || {}).test;
  let line = "Model: " + model.name + ", trained on " + model.dataset;
  if (test) line += "; " + (100 * test.acc).toFixed(1) + "% right on " + test.num_reviews.toLocaleString("en")
    + " test reviews";
  document.querySelector("footer").textContent = line + ". It knows English movie reviews best.";
}).catch(() => {});

for (const button of document.querySelectorAll("button.example")) {
  button.addEventListener("click", () => { text.value = button.dataset.text; form.requestSubmit(); });
}
"""


def _examples_html() -> str:
    import html

    buttons = [
        f'<button type="button" class="example" data-text="{html.escape(text)}">{html.escape(name)}</button>'
        for name, text in EXAMPLES.items()
    ]
    return "".join(buttons)


PAGE = html_page(
    title="Sentiment analyzer",
    intro="Paste a movie review: the model says whether it is positive or negative, how sure it is, "
    "and which words pushed it each way. Nothing you type is stored.",
    form=FORM.replace("__EXAMPLES__", _examples_html()),
    script=SCRIPT,
    footer="The model knows English movie reviews best.",
)


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


def sentiment_service(cfg: ServeConfig) -> BatchedService[str, torch.Tensor]:
    """The release's predictor with a micro-batcher: concurrent requests run through the model together."""
    predictor = SentimentPredictor.from_release(cfg.release, cfg.device)
    predictor.max_chars = cfg.max_chars
    return BatchedService(predictor, lambda texts: list(predictor.probabilities(texts)), cfg.max_batch)


def build_app(cfg: ServeConfig) -> FastAPI:
    """The app serving ``cfg.release``; its model loads when the app starts, not here."""
    app = create_app(
        title="Sentiment analyzer",
        load=lambda: sentiment_service(cfg),
        page_html=PAGE,
        max_body_bytes=cfg.max_body_kb * 1024,
    )

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        texts, batch = texts_of(await read_json_request(request), cfg.max_texts)
        service: BatchedService[str, torch.Tensor] = request.app.state.model
        predictor: SentimentPredictor = service.predictor
        prepared = []
        for i, text in enumerate(texts):
            try:
                prepared.append(await run_in_threadpool(predictor.prepare, text))
            except TextRejected as e:
                raise HTTPException(e.status, f"texts[{i}]: {e.detail}" if batch else e.detail) from e
        probabilities = await asyncio.gather(*(service.batcher.submit(text) for text, _ in prepared))
        answers = []
        for p, (text, notes) in zip(probabilities, prepared, strict=True):
            answer = predictor.answer(p, notes)
            if cfg.top_words:
                answer["evidence"] = await run_in_threadpool(predictor.evidence, text, cfg.top_words)
            answers.append(answer)
        model = predictor.name
        return {"predictions": answers, "model": model} if batch else {**answers[0], "model": model}

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until Ctrl+C (``--workers N``: N processes, each with its own model)."""
    return project.serve_main(argv, ServeConfig, "projects.sentiment_analyzer.serve:build_app")
