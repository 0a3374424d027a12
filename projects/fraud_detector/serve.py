"""Serve a release over HTTP: a JSON API that scores transactions, and a page that scores a whole CSV.

    python -m projects.fraud_detector serve --release runs/fraud_detector/creditcard-mlp/release

- ``POST /score`` with one transaction ``{"V1": -1.36, ..., "Amount": 149.62}`` -> ``{"score": 0.0021,
  "flagged": false, "threshold": 0.31}``; with a batch ``{"transactions": [{...}, ...]}`` (or a JSON
  list; at most ``--max-rows``) -> ``{"results": [{"score", "flagged"}, ...], "flagged": 1, "threshold"}``.
  Every transaction must hold exactly the release's features (``GET /health`` lists them), each a
  finite number;
- ``POST /score-file``: a CSV or Parquet file (multipart field ``file``, or a text/csv body) -> the
  rows scored, the score histogram, the threshold, the ``--top-rows`` highest-scored rows with their
  most unusual values, and the rows skipped (line number and reason);
- ``GET /``: a page where a person uploads a CSV and sees that histogram, the threshold and the top rows;
- ``GET /health``: the model (its features, score, threshold, costs, metrics; no server paths).

A bad request gets a JSON error with the reason: 422 for a missing or extra field (named), a value that
is not a number (named, with the transaction's index), too many transactions or a file without the
model's columns; 415 for another content type; 400 for a body that is not JSON; 413 for a body over
``--max-body-kb`` (``--max-upload-mb`` for files). The model loads once per worker; concurrent
``/score`` requests run through it together (``MicroBatcher``). Memory stays bounded: at most
``--files-at-once`` uploads are read and scored at a time (the others wait, unread), and a file's report
keeps its scores and its top rows, not its rows.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dlkit import project
from dlkit.config import flag
from dlkit.errors import UserError
from dlkit.serve import BatchedService, create_app, html_page, read_json_request
from dlkit.tabular import iter_table, table_columns
from projects.fraud_detector.predict import FraudPredictor

__all__ = ["PAGE", "ServeConfig", "build_app", "file_report", "main", "rows_of"]

EXAMPLE = '{"V1": -1.36, "V2": -0.07, ..., "Amount": 149.62}'


@dataclass
class ServeConfig(project.ServeConfig):
    """Serve a fraud detector release over HTTP: POST /score (JSON) and a page that scores a CSV."""

    max_rows: int = flag(10_000, help="most transactions in one POST /score request", min=1)
    max_upload_mb: int = flag(20, help="largest file POST /score-file (the page) accepts, in MB", min=1)
    top_rows: int = flag(20, help="highest-scored rows the page lists", min=1, max=1000)
    files_at_once: int = flag(
        2, help="uploaded files read and scored at the same time (others wait): bounds memory", min=1
    )


class Rejected(ValueError):
    """A request that will not be scored; the message says why (422)."""


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        raise Rejected(f"{where}field {name!r} must be a number, not {shown[:40]} ({type(value).__name__})")
    if not math.isfinite(value):
        raise Rejected(f"{where}field {name!r} must be a finite number, not {value}")
    return float(value)


def rows_of(body: Any, features: Sequence[str], max_rows: int) -> tuple[np.ndarray, bool]:
    """The transactions of a /score body as rows (N, F) in the release's feature order, and whether it
    was a single transaction; a Rejected error names the first problem."""
    single = isinstance(body, dict) and "transactions" not in body
    items = [body] if single else body.get("transactions") if isinstance(body, dict) else body
    if isinstance(body, dict) and not single and len(body) > 1:
        raise Rejected(
            f'a batch is {{"transactions": [...]}} alone; unexpected field(s) '
            f"{', '.join(sorted(k for k in body if k != 'transactions'))}"
        )
    if not isinstance(items, list):
        raise Rejected(f'send one transaction like {EXAMPLE}, or {{"transactions": [...]}}')
    if not items:
        raise Rejected("the batch holds no transaction")
    if len(items) > max_rows:
        raise Rejected(f"{len(items):,} transactions in one request; the limit is {max_rows:,}")
    wanted = set(features)
    rows = np.empty((len(items), len(features)), dtype=np.float32)
    for i, item in enumerate(items):
        where = "" if single else f"transaction {i}: "
        if not isinstance(item, dict):
            raise Rejected(f"{where}must be a JSON object of the features, not {type(item).__name__}")
        missing = [f for f in features if f not in item]
        extra = sorted(k for k in item if k not in wanted)
        if missing or extra:
            parts = [f"missing field(s) {', '.join(missing)}"] if missing else []
            parts += [f"unexpected field(s) {', '.join(map(str, extra))}"] if extra else []
            raise Rejected(
                f"{where}{'; '.join(parts)} (the model reads {len(features)} features: {', '.join(features)})"
            )
        rows[i] = [_number(item[f], where, f) for f in features]
    return rows, single


def _histogram(scores: np.ndarray, threshold: float, kind: str, bins: int = 40) -> dict[str, Any]:
    """Counts of the scores in ``bins`` bins: equal-width on [0, 1] for probabilities, else equal on a log
    scale between the smallest and largest score (the threshold included in the range)."""
    finite_t = threshold if math.isfinite(threshold) else None
    if kind == "probability":
        edges, log_x = np.linspace(0.0, 1.0, bins + 1), False
    else:
        positive = scores[scores > 0]
        low = float(positive.min()) if len(positive) else 1e-3
        high = max(float(scores.max()) if len(scores) else 1.0, finite_t or 0.0, low * 1.01)
        low = min(low, finite_t) if finite_t else low
        edges, log_x = np.geomspace(low, high, bins + 1), True
    counts, _ = np.histogram(np.clip(scores, edges[0], edges[-1]), edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "log_x": log_x}


def _unusual(predictor: FraudPredictor, x: np.ndarray, k: int = 3) -> list[list[dict[str, Any]]]:
    """For each row, the ``k`` features furthest from the training rows' median, in the release's robust
    scale (the interquartile range / 1.349: standard deviations for normal data)."""
    with torch.no_grad():
        z = predictor.model.preprocess(torch.from_numpy(x)).numpy()
    out = []
    for row_z, row_x in zip(z, x, strict=True):
        top = np.argsort(-np.abs(row_z))[:k]
        out.append(
            [
                {"feature": predictor.features[j], "value": float(row_x[j]), "sigmas": float(row_z[j])}
                for j in top
            ]
        )
    return out


def file_report(predictor: FraudPredictor, path: Path, top_rows: int) -> dict[str, Any]:
    """Score every good row of a CSV or Parquet file: counts, histogram, the top rows, the skipped rows.
    Only the scores and the ``top_rows`` highest-scored rows are kept, not the file's rows."""
    try:
        columns = table_columns(path)
    except UserError as e:
        raise Rejected(str(e).replace(str(path), "the file")) from e
    missing = [f for f in predictor.features if f not in columns]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise Rejected(
            f"the file lacks {len(missing)} of the model's {len(predictor.features)} feature "
            f"columns: {shown}. Its header names: {', '.join(columns[:12])}"
            f"{' ...' if len(columns) > 12 else ''}"
        )
    scores, where, bad = [], [], []
    top_x = np.zeros((0, len(predictor.features)), np.float32)  # the highest-scored rows so far
    top_s = np.zeros(0)
    for chunk in iter_table(path, predictor.features):
        s_chunk = predictor.score(chunk.x)
        scores.append(s_chunk)
        where.append(chunk.where)
        bad.extend(chunk.bad)
        keep = np.argsort(-np.r_[top_s, s_chunk], kind="stable")[:top_rows]  # a row beats a later tie
        top_x, top_s = np.concatenate([top_x, chunk.x])[keep], np.r_[top_s, s_chunk][keep]
    s = np.concatenate(scores) if scores else np.zeros(0)
    lines = np.concatenate(where) if where else np.zeros(0, dtype=np.int64)
    threshold = predictor.threshold
    order = np.argsort(-s, kind="stable")[:top_rows]
    top = [
        {"line": int(lines[i]), "score": float(s[i]), "flagged": bool(s[i] >= threshold), "unusual": u}
        for i, u in zip(order, _unusual(predictor, top_x), strict=True)
    ]
    return {
        "rows_scored": int(len(s)),
        "flagged": int((s >= threshold).sum()),
        "threshold": threshold,
        "score_kind": predictor.score_kind,
        "histogram": _histogram(s, threshold, predictor.score_kind),
        "top": top,
        "skipped": len(bad),
        "skipped_rows": [str(b) for b in bad[:50]],
        "ignored_columns": [c for c in columns if c not in predictor.features],
        "where": "row" if path.suffix == ".parquet" else "line",
    }


async def _upload(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The uploaded file's bytes and its suffix (.csv or .parquet)."""
    from starlette.datastructures import UploadFile

    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4, max_part_size=max_bytes) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "the form has no file in field 'file': send the CSV in it")
            name = (upload.filename or "upload.csv").lower()
            suffix = ".parquet" if name.endswith((".parquet", ".pq")) else ".csv"
            return await upload.read(), suffix
    if media in ("text/csv", "application/csv"):
        return await request.body(), ".csv"
    raise HTTPException(
        415,
        f"content type {media or '(none)'} is not accepted: send multipart/form-data "
        "with the file in field 'file', or a text/csv body",
    )


FORM = """
<style>
main { max-width: 60rem; } header .inner, footer { max-width: 60rem; }
.summary { font-size: 1.05rem; margin: 0 0 .8rem; }
.summary strong { color: var(--bad); }
svg.hist { width: 100%; height: 220px; display: block; }
svg.hist .bar { fill: var(--accent); } svg.hist .bar.over { fill: var(--bad); }
svg.hist text { font-size: 11px; fill: var(--muted); }
svg.hist .threshold { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 5 3; }
table.top { width: 100%; border-collapse: collapse; margin-top: .6rem; font-size: .92rem; }
table.top th, table.top td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
table.top td.num { font-variant-numeric: tabular-nums; text-align: right; }
.badge { display: inline-block; border-radius: 999px; padding: 0 .55rem; font-size: .8rem;
         font-weight: 600; }
.badge.flagged { background: #fbe3e1; color: var(--bad); }
.badge.ok { background: #e3f3e8; color: var(--good); }
#result h2 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
ul.skipped { margin: .3rem 0 0; padding-left: 1.1rem; color: var(--muted); font-size: .9rem; }
</style>
<form id="upload-form">
  <label class="dropzone" id="drop" for="file">
    <strong>Choose a CSV file</strong> of transactions, or drop it here
    <input type="file" id="file" name="file" accept=".csv,.parquet,text/csv" hidden>
    <div class="note" id="chosen">Its header must name the model's features.</div>
  </label>
  <button type="submit" id="submit">Score the file</button>
  <p class="note" id="model-note"></p>
</form>
"""

# The page draws the histogram itself (an SVG, no library) and fills the table with textContent only.
SCRIPT = """
const form = document.getElementById("upload-form"), input = document.getElementById("file");
const result = document.getElementById("result"), drop = document.getElementById("drop");
const button = document.getElementById("submit");
fetch("health").then(r => r.json()).then(h => {
  const m = h.model;
  document.getElementById("model-note").textContent = "Model: " + m.name + " trained on " + m.dataset
    + "; " + m.features.length + " features (" + m.features.slice(0, 4).join(", ") + ", ...); threshold "
    + fmt(m.threshold) + " (" + m.threshold_how + ").";
}).catch(() => {});
input.addEventListener("change", () => {
  document.getElementById("chosen").textContent = input.files.length ? input.files[0].name : "";
});
for (const name of ["dragover", "dragenter"]) {
  drop.addEventListener(name, ev => { ev.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
drop.addEventListener("drop", ev => {
  ev.preventDefault(); input.files = ev.dataTransfer.files; input.dispatchEvent(new Event("change"));
});
function fmt(x) {
  if (!isFinite(x)) return "none (nothing is flagged)";
  const tiny = Math.abs(x) < 0.01 && x !== 0;
  return Math.abs(x) >= 1000 || tiny ? x.toExponential(2) : x.toPrecision(3);
}
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function histogram(h, threshold) {
  const W = 900, H = 220, left = 44, bottom = 34, top = 10, right = 10;
  const svg = svgEl("svg", {class: "hist", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none"});
  const n = h.counts.length, lo = h.edges[0], hi = h.edges[n];
  const pos = v => h.log_x ? Math.log(v / lo) / Math.log(hi / lo) : (v - lo) / (hi - lo);
  const height = c => c > 0 ? Math.log10(1 + c) : 0, maxH = Math.max(...h.counts.map(height), 1);
  const plotW = W - left - right, plotH = H - top - bottom;
  h.counts.forEach((c, i) => {
    if (!c) return;
    const x0 = left + pos(h.edges[i]) * plotW, x1 = left + pos(h.edges[i + 1]) * plotW;
    const bh = height(c) / maxH * plotH, over = h.edges[i] >= threshold;
    const bar = svgEl("rect", {x: x0 + 0.5, y: top + plotH - bh, width: Math.max(x1 - x0 - 1, 1),
                               height: bh, class: "bar" + (over ? " over" : "")});
    bar.append(svgEl("title", {}, c + " rows scoring " + fmt(h.edges[i]) + " to " + fmt(h.edges[i + 1])));
    svg.append(bar);
  });
  [lo, h.log_x ? Math.sqrt(lo * hi) : (lo + hi) / 2, hi].forEach((v, i) => {
    const anchor = ["start", "middle", "end"][i];
    svg.append(svgEl("text", {x: left + pos(v) * plotW, y: H - 14, "text-anchor": anchor}, fmt(v)));
  });
  const what = "score (" + (h.log_x ? "log scale; " : "") + "bar height: log of the row count)";
  svg.append(svgEl("text", {x: left + plotW / 2, y: H - 1, "text-anchor": "middle"}, what));
  if (isFinite(threshold) && threshold >= lo && threshold <= hi) {
    const x = left + pos(threshold) * plotW;
    svg.append(svgEl("line", {x1: x, x2: x, y1: top, y2: top + plotH, class: "threshold",
                              id: "threshold-line"}));
    svg.append(svgEl("text", {x: x + 4, y: top + 10}, "threshold " + fmt(threshold)));
  }
  return svg;
}
function unusual(values) {
  return values.map(u => u.feature + " = " + fmt(u.value) + " (" + (u.sigmas > 0 ? "+" : "")
                         + u.sigmas.toFixed(1) + ")").join(", ");
}
function topTable(r) {
  const table = el("table", {class: "top"}), head = el("tr");
  const names = [r.where === "row" ? "Row" : "Line", "Score", "",
                 "Most unusual values (in standard deviations from the median)"];
  for (const name of names) head.append(el("th", {}, name));
  table.append(head);
  for (const row of r.top) {
    const tr = el("tr", {class: "top-row"}), status = el("td");
    const badge = row.flagged ? ["flagged", "flagged"] : ["ok", "below threshold"];
    status.append(el("span", {class: "badge " + badge[0]}, badge[1]));
    tr.append(el("td", {class: "num"}, row.line), el("td", {class: "num"}, fmt(row.score)), status,
              el("td", {}, unusual(row.unusual)));
    table.append(tr);
  }
  return table;
}
function show(r) {
  const summary = el("p", {class: "summary"});
  const skipped = r.skipped ? "; " + r.skipped + " skipped (see below)" : "";
  summary.append(r.rows_scored.toLocaleString() + " rows scored: ",
                 el("strong", {id: "flagged-count"}, r.flagged.toLocaleString() + " flagged"),
                 " at threshold " + fmt(r.threshold) + skipped + ".");
  const parts = [summary, el("h2", {}, "Score histogram"), histogram(r.histogram, r.threshold),
                 el("h2", {}, "Highest scores"), topTable(r)];
  if (r.skipped) {
    const ul = el("ul", {class: "skipped"});
    for (const s of r.skipped_rows) ul.append(el("li", {}, s));
    const more = r.skipped - r.skipped_rows.length;
    if (more > 0) ul.append(el("li", {}, "... and " + more + " more"));
    parts.push(el("h2", {}, "Skipped rows"), ul);
  }
  if (r.ignored_columns.length) {
    parts.push(el("p", {class: "note"}, "Ignored columns: " + r.ignored_columns.join(", ")));
  }
  result.replaceChildren(...parts);
}
form.addEventListener("submit", async ev => {
  ev.preventDefault();
  if (!input.files.length) { showError(result, "Choose a CSV file first."); return; }
  button.disabled = true; result.replaceChildren(el("p", {class: "note"}, "Scoring..."));
  const data = new FormData(); data.append("file", input.files[0]);
  try {
    const response = await fetch("score-file", {method: "POST", body: data});
    const body = await response.json();
    if (response.ok) show(body); else showError(result, "This file could not be scored: " + body.detail);
  } catch (e) { showError(result, "The server could not be reached: " + e.message); }
  finally { button.disabled = false; }
});
"""

PAGE = html_page(
    title="Fraud detector",
    intro="Upload a CSV of card transactions: every row gets a suspicion score, and the rows at or above "
    "the threshold are flagged for review. The histogram shows how the scores spread; the table lists "
    "the highest scores with the values that make each row unusual.",
    form=FORM,
    script=SCRIPT,
    footer="Deep Learning with PyTorch: projects/fraud_detector. API: POST /score (JSON), "
    "POST /score-file (CSV), GET /health.",
)


def build_app(cfg: ServeConfig) -> FastAPI:
    """The app serving ``cfg.release``; its model loads when the app starts, not here."""
    max_json = cfg.max_body_kb * 1024
    max_file = cfg.max_upload_mb * 2**20

    def load() -> BatchedService[np.ndarray, np.ndarray]:
        predictor = FraudPredictor.from_release(cfg.release, cfg.device)
        assert isinstance(predictor, FraudPredictor)

        def batch(items: list[np.ndarray]) -> list[np.ndarray]:
            scores = predictor.score(np.concatenate(items))
            return np.split(scores, np.cumsum([len(i) for i in items])[:-1])

        return BatchedService(predictor, batch, cfg.max_batch)

    files_at_once = asyncio.Semaphore(cfg.files_at_once)
    app = create_app(
        title="Fraud detector", load=load, page_html=PAGE, max_body_bytes=max(max_json, max_file)
    )

    @app.post("/score")
    async def score(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length", "")
        too_large = HTTPException(
            413,
            f"the request body is over the limit of {max_json:,} bytes "
            "(--max-body-kb); send fewer transactions per request",
        )
        if declared.isdigit() and int(declared) > max_json:
            raise too_large
        if len(await request.body()) > max_json:  # sent without a Content-Length (chunked)
            raise too_large
        service: BatchedService[np.ndarray, np.ndarray] = request.app.state.model
        predictor: FraudPredictor = service.predictor
        body = await read_json_request(request, example=EXAMPLE)
        try:
            rows, single = rows_of(body, predictor.features, cfg.max_rows)
        except Rejected as e:
            raise HTTPException(422, str(e)) from e
        scores = await service.batcher.submit(rows)
        t = predictor.threshold
        results = [{"score": float(s), "flagged": bool(s >= t)} for s in scores]
        if single:
            return {**results[0], "threshold": t}
        return {"results": results, "flagged": sum(r["flagged"] for r in results), "threshold": t}

    @app.post("/score-file")
    async def score_file(request: Request) -> dict[str, Any]:
        service: BatchedService[np.ndarray, np.ndarray] = request.app.state.model
        async with files_at_once:  # at most --files-at-once uploads in memory; the others wait unread
            data, suffix = await _upload(request, max_file)
            if not data.strip():
                raise HTTPException(422, "the file is empty: send a CSV whose header names the features")
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"upload{suffix}"
                path.write_bytes(data)
                del data
                try:
                    return await run_in_threadpool(file_report, service.predictor, path, cfg.top_rows)
                except Rejected as e:
                    raise HTTPException(422, str(e)) from e
                except UserError as e:
                    raise HTTPException(422, str(e).replace(str(path), "the file")) from e

    return app


def main(argv: Sequence[str] | None = None) -> int:
    return project.serve_main(argv, ServeConfig, "projects.fraud_detector.serve:build_app")


if __name__ == "__main__":
    import sys

    sys.exit(main())
