"""Serve a release over HTTP: a page where text appears as it is generated, and a streaming API.

    python -m projects.text_generator serve --release runs/text_generator/cpu/release --port 8000

- ``GET /``: a page with a prompt box and the settings; the text appears character by character;
- ``POST /generate`` with ``{"prompt": "ROMEO:", "num_chars": 300, "temperature": 0.8, "top_k": 40,
  "seed": 1}`` (all optional) -> ``text/plain`` streamed as it is sampled: the continuation only, one
  character per chunk. The header ``X-Seed`` holds the seed used (random when none is given), so a
  text can be made again;
- ``GET /health``: ``{"status": "ok", "model": {...}}``: the model, the text it was trained on, its
  metrics, the characters it knows, its context length and this server's limits (no file paths).

Every request is checked before the first character is sent, so a bad one gets a JSON error with the
reason and no text: 415 for a content type other than application/json, 400 for a body that is not
JSON, 422 for an unknown field, a value of the wrong kind or out of range, a prompt with characters the
model never saw (named) or longer than ``--max-prompt-chars``, ``num_chars`` above ``--max-chars``;
413 for a body over ``--max-body-kb``. The model is loaded once when the server starts; concurrent
streams take turns, one character each (a lock around each step), so none waits for another to end.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from dlkit.config import flag
from dlkit.project import ServeConfig as ProjectServeConfig
from dlkit.project import serve_main
from dlkit.serve import create_app, html_page, read_json_request
from projects.text_generator.predict import SampleError, TextGenerator

__all__ = ["PAGE", "GenerationService", "ServeConfig", "build_app", "main", "parse_request"]

EXAMPLE = '{"prompt": "ROMEO:", "num_chars": 300, "temperature": 0.8, "top_k": 40, "seed": 1}'
MAX_SEED = 2**63 - 1


@dataclass
class ServeConfig(ProjectServeConfig):
    """Serve a text generator release over HTTP: a page, and POST /generate that streams the text."""

    max_chars: int = flag(2000, help="most characters one request may ask for", min=1, max=1_000_000)
    max_prompt_chars: int = flag(
        10_000, help="longest prompt accepted (only the last context is read)", min=1
    )


class GenerationService:
    """What the server keeps loaded: the generator, a lock that gives concurrent streams turns, and the
    limits that /health reports."""

    def __init__(self, generator: TextGenerator, max_chars: int, max_prompt_chars: int) -> None:
        self.generator, self.max_chars, self.max_prompt_chars = generator, max_chars, max_prompt_chars
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        limits = {"max_chars": self.max_chars, "max_prompt_chars": self.max_prompt_chars}
        return {**self.generator.describe(), "limits": limits}

    def stream(self, settings: dict[str, Any]) -> Iterator[str]:
        """The characters of one continuation; each sampling step holds the lock."""
        characters = self.generator.stream(**settings)
        while True:
            with self.lock:
                char = next(characters, None)
            if char is None:
                return
            yield char


def _number(body: dict[str, Any], key: str, default: Any, kind: type, low: float, high: float) -> Any:
    value = body.get(key, default)
    if value is None and default is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        expected = "a whole number" if kind is int else "a number"
        raise SampleError(f"{key} must be {expected}, not {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise SampleError(f"{key} must be between {low:g} and {high:g}, not {value!r}")
    return kind(value)


def parse_request(body: Any, service: GenerationService) -> dict[str, Any]:
    """The settings of a /generate request, checked; a SampleError (422) says what is wrong."""
    if not isinstance(body, dict):
        raise SampleError(f"send a JSON object like {EXAMPLE}")
    unknown = sorted(set(body) - {"prompt", "num_chars", "temperature", "top_k", "seed"})
    if unknown:
        raise SampleError(f"unknown field(s) {', '.join(map(repr, unknown))}: send fields like {EXAMPLE}")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise SampleError(f"prompt must be a string, not {type(prompt).__name__}")
    if len(prompt) > service.max_prompt_chars:
        raise SampleError(
            f"the prompt has {len(prompt):,} characters; the limit is {service.max_prompt_chars:,} (the "
            f"model reads only the last {service.generator.block_size})"
        )
    service.generator.encode_prompt(prompt)  # names the characters it does not know
    seed = _number(body, "seed", None, int, 0, MAX_SEED)
    return {
        "prompt": prompt,
        "num_chars": _number(body, "num_chars", min(300, service.max_chars), int, 1, service.max_chars),
        "temperature": _number(body, "temperature", 0.8, float, 1e-3, 100.0),
        "top_k": _number(body, "top_k", None, int, 1, 1_000_000),
        "seed": secrets.randbelow(2**31) if seed is None else seed,
    }


FORM = """
<style>
.settings { display: grid; grid-template-columns: repeat(4, 1fr); gap: .75rem; margin-top: .9rem; }
.settings label { font-size: .88rem; color: var(--muted); display: block; margin-bottom: .2rem; }
.actions { display: flex; gap: .6rem; align-items: center; }
button.secondary { background: #fff; color: var(--ink); border: 1px solid var(--line); }
#output { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; white-space: pre-wrap;
          word-break: break-word; margin: 0; font-size: .95rem; line-height: 1.45; }
#output .prompt { color: var(--muted); }
#status { margin: .75rem 0 0; }
@media (max-width: 560px) { .settings { grid-template-columns: repeat(2, 1fr); } }
</style>
<form id="generate-form">
  <label class="field" for="prompt">Prompt</label>
  <textarea id="prompt" name="prompt" rows="4" placeholder="ROMEO:"></textarea>
  <div class="settings">
    <div><label for="num_chars">Characters</label>
      <input type="number" id="num_chars" value="300" min="1" step="1"></div>
    <div><label for="temperature">Temperature</label>
      <input type="number" id="temperature" value="0.8" min="0.05" max="5" step="0.05"></div>
    <div><label for="top_k">Top-k</label>
      <input type="number" id="top_k" value="40" min="1" step="1" placeholder="all"></div>
    <div><label for="seed">Seed</label>
      <input type="number" id="seed" min="0" step="1" placeholder="random"></div>
  </div>
  <div class="actions">
    <button type="submit" id="generate">Generate</button>
    <button type="button" id="stop" class="secondary" disabled>Stop</button>
  </div>
  <p class="note" id="model-note"></p>
</form>
"""

SCRIPT = """
const form = document.getElementById("generate-form");
const result = document.getElementById("result");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
let controller = null;

fetch("health").then(r => r.json()).then(h => {
  const m = h.model, loss = m.metrics && m.metrics.val_loss_whole_split;
  let note = "A character-level GPT trained on " + m.dataset + " (" + m.characters.length
    + " characters known, context " + m.context_length + ")";
  if (loss) note += "; validation loss " + loss.toFixed(3) + " nats per character";
  document.getElementById("model-note").textContent = note + ".";
  document.getElementById("num_chars").max = m.limits.max_chars;
}).catch(() => {});

function numberOrNull(id) {
  const v = document.getElementById(id).value.trim();
  return v === "" ? null : Number(v);
}

stopButton.addEventListener("click", () => { if (controller) controller.abort(); });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = document.getElementById("prompt").value;
  const body = {prompt, num_chars: numberOrNull("num_chars"), temperature: numberOrNull("temperature"),
                top_k: numberOrNull("top_k"), seed: numberOrNull("seed")};
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  controller = new AbortController();
  generateButton.disabled = true; stopButton.disabled = false;
  const output = document.createElement("pre"); output.id = "output";
  const shown = document.createElement("span"); shown.className = "prompt"; shown.textContent = prompt;
  const text = document.createElement("span"); text.id = "generated";
  output.append(shown, text);
  const status = document.createElement("p"); status.id = "status"; status.className = "note";
  status.textContent = "Generating...";
  result.replaceChildren(output, status);
  let chunks = 0, count = 0, seed = "";
  try {
    const response = await fetch("generate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const error = await response.json();
      showError(result, error.error + ": " + error.detail);
      return;
    }
    seed = response.headers.get("X-Seed");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      const piece = decoder.decode(value, {stream: true});
      text.textContent += piece; chunks += 1; count += [...piece].length;
      result.dataset.chunks = chunks;
    }
    status.textContent = count + " characters, seed " + seed
      + " (the same seed and settings give the same text)";
  } catch (e) {
    if (e.name === "AbortError") {
      status.textContent = "Stopped after " + count + " characters (seed " + seed + ").";
    }
    else showError(result, "The server could not be reached: " + e.message);
  } finally {
    generateButton.disabled = false; stopButton.disabled = true; controller = null;
  }
});
"""

PAGE = html_page(
    title="Text generator",
    intro="Type the start of a text; a small GPT that reads and writes one character at a time "
    "continues it. Lower temperatures are more conservative; top-k keeps only the k likeliest characters.",
    form=FORM,
    script=SCRIPT,
    footer="Deep Learning with PyTorch: projects/text_generator. "
    "API: POST /generate (streamed text), GET /health.",
)


def build_app(cfg: ServeConfig) -> FastAPI:
    """The FastAPI app for ``cfg`` (the release is loaded once, when the server starts)."""

    def load() -> GenerationService:
        generator = TextGenerator.load(release=cfg.release, device=cfg.device)
        return GenerationService(generator, cfg.max_chars, cfg.max_prompt_chars)

    app = create_app(title="Text generator", load=load, page_html=PAGE, max_body_bytes=cfg.max_body_kb * 1024)

    @app.post("/generate")
    async def generate(request: Request) -> StreamingResponse:
        service: GenerationService = request.app.state.model
        body = await read_json_request(request, example=EXAMPLE)
        try:
            settings = parse_request(body, service)
        except SampleError as e:
            raise HTTPException(422, str(e)) from e
        headers = {"X-Seed": str(settings["seed"]), "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        headers["X-Content-Type-Options"] = "nosniff"  # browsers hand over each chunk as it comes
        return StreamingResponse(
            service.stream(settings), media_type="text/plain; charset=utf-8", headers=headers
        )

    return app


def main(argv: Sequence[str] | None = None) -> int:
    return serve_main(argv, ServeConfig, "projects.text_generator.serve:build_app")


if __name__ == "__main__":
    import sys

    sys.exit(main())
