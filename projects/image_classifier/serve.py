"""Serve a release over HTTP: a page to drop an image on, and a JSON API.

    python -m projects.image_classifier serve --release runs/image_classifier/.../release --port 8000

- ``GET /``: a page where you drop or pick an image and see the predicted classes as bars;
- ``POST /predict?top_k=3``: an image (multipart field ``file``, or the bytes with an image/* type)
  -> ``{"predictions": [{"label": "cat", "probability": 0.91}, ...], "model": "resnet_small"}``;
- ``GET /health``: ``{"status": "ok", "model": {...what the model is and how well it does...}}``.

The model is loaded once when the server starts (``dlkit.project.serve_main`` runs uvicorn, one or
several workers). Bad uploads get a 4xx JSON error with the reason (see dlkit.serve), and the server
carries on. Memory stays bounded under concurrent large uploads: an image is decoded only when its
pixels fit in ``--decode-megapixels`` (shared by every request of a worker; the others wait their
turn), it is resized to the model's input at once and the full-size copy dropped, and the memory of
large decodes is handed back to the system (``dlkit.serve.PixelBudget``, ``decode_within``,
``release_memory``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from dlkit import project
from dlkit.config import flag
from dlkit.serve import (
    BatchedService,
    ImageRejected,
    PixelBudget,
    create_app,
    decode_within,
    html_page,
    read_image_bytes,
)
from projects.image_classifier.predict import ImagePredictor

__all__ = ["ServeConfig", "build_app", "classifier_service", "main", "page"]


@dataclass
class ServeConfig(project.ServeConfig):
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    max_body_kb: int = flag(
        10240, help="largest upload accepted, in KiB (413 above it; 10 MiB: a phone photo)", min=1
    )
    max_megapixels: float = flag(40.0, help="largest image accepted, in megapixels (413 above it)", above=0)
    decode_megapixels: float = flag(
        40.0, help="decoded megapixels in flight at once per worker; further uploads wait (memory)", above=0
    )


FORM = """
<label class="dropzone" id="drop">
  <input type="file" id="file" accept="image/*">
  <strong>Choose an image</strong> or drop one here
  <span class="note" id="chosen">PNG, JPEG, GIF, BMP, WebP or TIFF, up to {limits}</span>
</label>
<img id="preview" alt="the image sent" hidden>
<style>
  #preview[hidden] {{ display: none; }}
  #drop {{ position: relative; }}
  #drop strong {{ color: var(--accent); }}
  #drop .note {{ display: block; margin-top: .35rem; }}
  #file {{ position: absolute; inset: 0; opacity: 0; cursor: pointer; }}  /* the whole zone picks a file */
</style>
"""

SCRIPT = """
const input = document.getElementById("file");
const drop = document.getElementById("drop");
const preview = document.getElementById("preview");
const result = document.getElementById("result");
let previewUrl = null;

function showPreview(file) {
  // Only an image the server accepted is shown, and only if the browser can draw it.
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
}
preview.addEventListener("load", () => { preview.hidden = false; });
preview.addEventListener("error", () => { preview.hidden = true; });

async function classify(file) {
  preview.hidden = true;
  document.getElementById("chosen").textContent = file.name;
  const status = document.createElement("p");
  status.className = "note";
  status.textContent = "Classifying " + file.name + "...";
  result.replaceChildren(status);
  const form = new FormData();
  form.append("file", file);
  let response, body;
  try {
    response = await fetch("predict?top_k=5", {method: "POST", body: form});
    body = await response.json();
  } catch (error) {
    showError(result, "The server did not answer (" + error + "). Try again in a moment.");
    return;
  }
  if (!response.ok) {
    showError(result, body.detail ? body.error + ": " + body.detail : "Error " + response.status);
    return;
  }
  showPreview(file);
  const top = body.predictions[0];
  const verdict = document.createElement("p");
  verdict.className = "verdict";
  verdict.textContent = "Most likely " + top.label + " (" + (100 * top.probability).toFixed(1) + "%)";
  const bars = document.createElement("div");
  result.replaceChildren(verdict, bars);
  showBars(bars, body.predictions);
}

input.addEventListener("change", () => { if (input.files.length) classify(input.files[0]); });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) classify(event.dataTransfer.files[0]);
});

// What the model is, from /health: its classes in the intro, its scores in the footer.
fetch("health").then((r) => r.json()).then((health) => {
  const m = health.model;
  const parts = [m.name];
  if (m.dataset) parts.push("trained on " + m.dataset);
  const acc = m.metrics && (m.metrics.test_acc_tta ?? m.metrics.test_acc);
  if (typeof acc === "number") parts.push("test accuracy " + (100 * acc).toFixed(1) + "%");
  parts.push("running on " + m.device);
  document.querySelector("footer").textContent = "Model: " + parts.join(" \\u00b7 ");
  if (m.classes) {
    document.querySelector(".intro").textContent =
      "Pick or drop a photo: the model tells which of its " + m.classes.length + " classes it shows (" +
      m.classes.join(", ") + "). The image is not stored.";
  }
}).catch(() => {});
"""


def page(cfg: ServeConfig) -> str:
    """The page, stating this server's upload limits."""
    limits = f"{cfg.max_body_kb / 1024:g} MB and {cfg.max_megapixels:g} megapixels"
    return html_page(
        title="Image classifier",
        intro="Pick or drop a photo: the model tells what it shows. The image is not stored.",
        form=FORM.format(limits=limits),
        script=SCRIPT,
        footer="Model: loading...",
    )


def classifier_service(
    predictor: ImagePredictor, max_batch: int = 32
) -> BatchedService[torch.Tensor, torch.Tensor]:
    """The predictor with a micro-batcher: concurrent uploads go through the model as one batch."""
    return BatchedService(predictor, lambda xs: list(predictor.probabilities_of(torch.stack(xs))), max_batch)


def build_app(cfg: ServeConfig) -> FastAPI:
    """The app serving ``cfg.release``; its model loads when the app starts, not here."""
    max_pixels = int(cfg.max_megapixels * 1e6)
    budget = PixelBudget(max(int(cfg.decode_megapixels * 1e6), max_pixels))  # one largest image always fits
    app = create_app(
        title="Image classifier",
        load=lambda: classifier_service(ImagePredictor.from_release(cfg.release, cfg.device), cfg.max_batch),
        page_html=page(cfg),
        max_body_bytes=cfg.max_body_kb * 1024,
    )

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=1000)) -> dict[str, Any]:
        data = await read_image_bytes(request)
        service: BatchedService[torch.Tensor, torch.Tensor] = request.app.state.model
        try:  # (C, H, W): decoded within the budget and resized at once, off the event loop
            x = await run_in_threadpool(
                decode_within, data, budget, max_pixels=max_pixels, convert=service.predictor.prepare
            )
        except ImageRejected as e:
            raise HTTPException(e.status, e.detail) from e
        except (OSError, ValueError) as e:  # a mode Pillow cannot convert, say
            raise HTTPException(400, f"the image could not be converted to the model's input: {e}") from e
        del data
        probabilities = await service.batcher.submit(x)  # (num_classes,)
        return {
            "predictions": service.predictor.top_classes(probabilities, top_k),
            "model": service.predictor.name,
        }

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until Ctrl+C."""
    return project.serve_main(argv, ServeConfig, "projects.image_classifier.serve:build_app")
