"""Serve a release over HTTP: a page to drop an image on, and a JSON API.

    python -m projects.image_classifier serve --release runs/image_classifier/.../release --port 8000

- ``GET /``: a page where you drop or pick an image and see the predicted classes as bars;
- ``POST /predict?top_k=3``: an image (multipart field ``file``, or the bytes with an image/* type)
  -> ``{"predictions": [{"label": "cat", "probability": 0.91}, ...], "model": {...}}``;
- ``GET /health``: ``{"status": "ok", "model": {...the release's metadata...}}``.

The model is loaded once when the server starts. Bad uploads get a 4xx JSON error with the reason
(see dlkit.serve), and the server carries on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from dlkit.config import parse_config
from dlkit.serve import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PIXELS,
    BatchedService,
    create_app,
    html_page,
    read_image_request,
)
from projects.image_classifier.predict import Predictor

__all__ = ["PAGE", "classifier_service", "ServeConfig", "app_from_env", "build_app", "main"]

FORM = """
<label class="dropzone" id="drop">
  <input type="file" id="file" accept="image/*">
  <span>or drop an image here</span>
</label>
<img id="preview" alt="the image sent" hidden>
"""

SCRIPT = """
const input = document.getElementById("file");
const drop = document.getElementById("drop");
const preview = document.getElementById("preview");
const result = document.getElementById("result");

async function classify(file) {
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  result.textContent = "Classifying...";
  const form = new FormData();
  form.append("file", file);
  try {
    const response = await fetch("predict?top_k=5", {method: "POST", body: form});
    const body = await response.json();
    if (response.ok) showBars(result, body.predictions);
    else showError(result, body.error + ": " + body.detail);
  } catch (error) {
    showError(result, "The server did not answer: " + error);
  }
}

input.addEventListener("change", () => { if (input.files.length) classify(input.files[0]); });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) classify(event.dataTransfer.files[0]);
});
"""

PAGE = html_page(
    title="Image classifier",
    intro="Pick or drop a photo: the model guesses what is in it. The image is not stored.",
    form=FORM,
    script=SCRIPT,
)


def classifier_service(
    predictor: Predictor, max_batch: int = 32
) -> BatchedService[torch.Tensor, torch.Tensor]:
    """The predictor with a micro-batcher: concurrent uploads go through the model as one batch."""
    return BatchedService(predictor, lambda xs: list(predictor.probabilities_of(torch.stack(xs))), max_batch)


def build_app(
    release_dir: str | Path,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    device: str = "cpu",
    max_batch: int = 32,
) -> FastAPI:
    """The app serving ``release_dir``; its model loads when the app starts, not here."""
    release_dir = Path(release_dir)
    app = create_app(
        title="Image classifier",
        load=lambda: classifier_service(Predictor.from_release(release_dir, device), max_batch),
        page_html=PAGE,
        max_body_bytes=max_body_bytes,
    )

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=1000)) -> dict[str, Any]:
        image = await read_image_request(request, max_pixels=max_pixels)
        service: BatchedService[torch.Tensor, torch.Tensor] = request.app.state.model
        try:
            x = await run_in_threadpool(service.predictor.prepare, image)  # (C, H, W), off the event loop
        except (OSError, ValueError) as e:  # a mode Pillow cannot convert, say
            raise HTTPException(400, f"the image could not be converted to the model's input: {e}") from e
        probabilities = await service.batcher.submit(x)  # (num_classes,)
        return {
            "predictions": service.predictor.top_classes(probabilities, top_k),
            "model": service.predictor.name,
        }

    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory projects.image_classifier.serve:app_from_env`` (several workers)."""
    return build_app(
        os.environ["IMAGE_CLASSIFIER_RELEASE"],
        max_body_bytes=int(os.environ.get("IMAGE_CLASSIFIER_MAX_BODY", DEFAULT_MAX_BODY_BYTES)),
        max_pixels=int(os.environ.get("IMAGE_CLASSIFIER_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
        device=os.environ.get("IMAGE_CLASSIFIER_DEVICE", "cpu"),
        max_batch=int(os.environ.get("IMAGE_CLASSIFIER_MAX_BATCH", 32)),
    )


@dataclass
class ServeConfig:
    """Serve a release folder (written by `export`) over HTTP with uvicorn."""

    release: str = field(default="", metadata={"help": "the release folder (required)"})
    host: str = field(default="127.0.0.1", metadata={"help": "0.0.0.0 to be reachable from other machines"})
    port: int = 8000
    workers: int = field(default=1, metadata={"help": "processes, each with its own copy of the model"})
    max_upload_mb: float = 10.0
    max_megapixels: float = 40.0
    device: str = field(default="auto", metadata={"help": "auto: a GPU when there is one, else the CPU"})
    max_batch: int = field(default=32, metadata={"help": "most concurrent requests run as one batch"})
    log_level: str = "info"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until Ctrl+C."""
    import uvicorn

    cfg = parse_config(ServeConfig, argv)
    if not cfg.release:
        raise SystemExit(
            "serve needs --release (a folder written by `python -m projects.image_classifier export`)"
        )
    os.environ["IMAGE_CLASSIFIER_RELEASE"] = cfg.release  # the workers build their app from these
    os.environ["IMAGE_CLASSIFIER_MAX_BODY"] = str(int(cfg.max_upload_mb * 2**20))
    os.environ["IMAGE_CLASSIFIER_MAX_PIXELS"] = str(int(cfg.max_megapixels * 1e6))
    os.environ["IMAGE_CLASSIFIER_DEVICE"] = cfg.device
    os.environ["IMAGE_CLASSIFIER_MAX_BATCH"] = str(cfg.max_batch)
    uvicorn.run(
        "projects.image_classifier.serve:app_from_env",
        factory=True,
        host=cfg.host,
        port=cfg.port,
        workers=cfg.workers,
        log_level=cfg.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
