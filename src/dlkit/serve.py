"""Serve a model over HTTP with FastAPI: the parts every project's server shares.

``create_app(title=..., load=...)`` returns a FastAPI app that calls ``load()`` once at start-up (in
the lifespan) and keeps what it returns on ``app.state.model``; the project adds its own routes::

    app = create_app(title="Image classifier", load=lambda: Predictor.from_release(path), page_html=page)

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        image = await read_image_request(request)          # 400 / 413 / 415 / 422 with a reason
        return {"predictions": request.app.state.model.predict([image])[0]}

What the app does for every project:

- refuses request bodies over ``max_body_bytes`` with 413: from Content-Length before reading, and
  while reading a body sent without one (chunked); :func:`read_json_request` refuses JSON that is not
  UTF-8, nested too deep or holding numbers too long to parse with 400/415 and a reason, never 500;
- answers every error as JSON ``{"error": "Unsupported Media Type", "detail": "why, and what to send"}``;
- serves ``GET /health`` (status and the model's metadata) and ``GET /`` (an HTML page, when given).

:class:`MicroBatcher` runs concurrent requests through the model as one batch.
:func:`decode_image` opens untrusted image bytes safely: only common formats, a pixel limit checked
from the header before decoding (decompression bombs), truncated files refused, EXIF orientation
applied; :class:`PixelBudget` bounds the decoded pixels in flight across concurrent requests, and
:func:`release_memory` gives the memory of large decodes back to the system. It needs only Pillow;
FastAPI is imported by the server parts alone, so a command-line ``predict`` can use it without the
serving extras.
"""

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import html
import io
import json
import queue
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FORMATS",
    "BatchedService",
    "BodySizeLimit",
    "ImageRejected",
    "MicroBatcher",
    "PixelBudget",
    "create_app",
    "decode_image",
    "error_body",
    "html_page",
    "read_image_bytes",
    "read_image_request",
    "read_json_request",
    "release_memory",
]

DEFAULT_MAX_BODY_BYTES = 10 * 2**20  # 10 MiB: a large phone photo
DEFAULT_MAX_PIXELS = 40_000_000  # decoded as RGB that is 120 MB of memory per request
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # never EPS (it runs Ghostscript), PSD, ...

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_body(status: int, detail: str) -> dict[str, str]:
    """The JSON every error answers with: the status's name and the reason."""
    return {"error": HTTPStatus(status).phrase, "detail": detail}


# --- Decoding untrusted images ----------------------------------------------------------------------


class ImageRejected(ValueError):
    """Image bytes that will not be decoded; ``status`` is the HTTP status that says why (400/413/415)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode untrusted bytes into a PIL image (EXIF orientation applied), or raise ImageRejected.

    Empty or truncated data is 400, a format other than :data:`IMAGE_FORMATS` 415, and an image of
    more than ``max_pixels`` 413: its size is read from the header, before any pixel is decoded.
    """
    if not data:
        raise ImageRejected(400, "the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError as e:
        raise ImageRejected(413, f"the image has too many pixels: {e}") from e
    except UnidentifiedImageError as e:
        raise ImageRejected(415, f"not an image in a supported format ({', '.join(IMAGE_FORMATS)})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageRejected(400, f"the image header is corrupt: {e}") from e
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            413,
            f"the image is {width}x{height} = {width * height / 1e6:.1f} megapixels; the limit is "
            f"{max_pixels / 1e6:g} megapixels: scale it down and send it again",
        )
    if width == 0 or height == 0:
        raise ImageRejected(400, f"the image has no pixels ({width}x{height})")
    try:
        image.load()  # Pillow raises here on a truncated or corrupt file (LOAD_TRUNCATED_IMAGES is off)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
        raise ImageRejected(400, f"the image could not be decoded: it is truncated or corrupt ({e})") from e
    try:
        return ImageOps.exif_transpose(image)  # a phone photo taken sideways is stored sideways
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        return image  # unreadable EXIF: keep the pixels as stored


def _acceptable_image_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media in ("", "application/octet-stream") or media.startswith("image/")


async def read_image_bytes(request: "Request", *, field: str = "file") -> bytes:
    """The image bytes a request carries, undecoded: a multipart form's ``field``, or the whole body as
    image/*. Raises HTTPException 415 for other content types, 422 for a form without ``field``.

    For servers that decode on their own terms (e.g. within a :class:`PixelBudget`, see
    :func:`decode_within`); :func:`read_image_request` reads and decodes in one call.
    """
    from fastapi import HTTPException
    from starlette.datastructures import UploadFile

    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get(field)
            if not isinstance(upload, UploadFile):
                problem = (
                    f"has no field {field!r}" if upload is None else f"field {field!r} is text, not a file"
                )
                raise HTTPException(422, f"the form {problem}: send the image file in it")
            if not _acceptable_image_type(upload.content_type):
                raise HTTPException(
                    415, f"the uploaded file is {upload.content_type}, not an image: send a PNG or JPEG"
                )
            return await upload.read()
    if _acceptable_image_type(media) and media:
        return await request.body()
    raise HTTPException(
        415,
        f"content type {media or '(none)'} is not accepted: send multipart/form-data with the image "
        f"in field {field!r}, or the image bytes with an image/* content type",
    )


async def read_image_request(
    request: "Request", *, field: str = "file", max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """The image a request carries (:func:`read_image_bytes`), decoded in a worker thread, off the event
    loop; decode_image's 400 / 413 / 415 become HTTPExceptions."""
    from fastapi import HTTPException
    from starlette.concurrency import run_in_threadpool

    data = await read_image_bytes(request, field=field)
    try:
        return await run_in_threadpool(decode_image, data, max_pixels=max_pixels)
    except ImageRejected as e:
        raise HTTPException(e.status, e.detail) from e


class PixelBudget:
    """At most ``max_pixels`` decoded pixels in flight at once, across every request of a process.

    Sixteen concurrent uploads of a 36-megapixel PNG each decode to 108 MB of RGB, and Pillow's
    intermediate buffers double that: a server that decodes them all at once grows by gigabytes. A
    request takes its image's pixel count (read from the header) from the budget before decoding and
    gives it back after; a request whose image is larger than the whole budget is refused (413) by
    :func:`decode_image`'s own limit first.
    """

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._available = max_pixels
        self._cond = threading.Condition()

    def acquire(self, pixels: int) -> int:
        """Block until ``pixels`` (capped at the budget) are free; returns what was taken."""
        take = min(pixels, self.max_pixels)
        with self._cond:
            self._cond.wait_for(lambda: self._available >= take)
            self._available -= take
        return take

    def release(self, taken: int) -> None:
        with self._cond:
            self._available += taken
            self._cond.notify_all()

    @property
    def in_flight(self) -> int:
        return self.max_pixels - self._available


def _header_pixels(data: bytes) -> int:
    """The pixel count an image's header declares (0 when it cannot be read: decode_image says why)."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            return width * height
    except Exception:
        return 0


def decode_within(
    data: bytes, budget: PixelBudget | None, *, max_pixels: int = DEFAULT_MAX_PIXELS, convert: Any = None
) -> Any:
    """:func:`decode_image`, then ``convert(image)`` (e.g. resize to the model's input), holding the
    image's pixels of ``budget`` while both run; the full-size image is dropped before returning."""
    taken = budget.acquire(_header_pixels(data)) if budget is not None else 0
    try:
        image = decode_image(data, max_pixels=max_pixels)
        result = convert(image) if convert is not None else image
        if convert is not None:
            image.close()
        del image
        return result
    finally:
        if budget is not None:
            budget.release(taken)
        if taken >= 4_000_000:  # a large decode: hand its memory back rather than keep it for later
            release_memory()


_LIBC: Any = None


def release_memory() -> None:
    """Give freed memory back to the system: Pillow's block cache, and glibc's malloc arenas (which
    otherwise keep the high-water mark of large decodes for the life of the process)."""
    global _LIBC
    with contextlib.suppress(AttributeError):
        Image.core.clear_cache()  # type: ignore[attr-defined]
    if sys.platform.startswith("linux"):
        if _LIBC is None:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = getattr(_LIBC, "malloc_trim", None)
        if trim is not None:
            trim(0)


# --- JSON requests ----------------------------------------------------------------------------------

MAX_JSON_DEPTH = 32


def _json_depth_ok(text: str, limit: int) -> bool:
    """False when brackets nest deeper than ``limit`` (json.loads would recurse past Python's stack)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


async def read_json_request(request: "Request", *, example: str = '{"text": "..."}') -> Any:
    """The JSON a request carries, or HTTPException 415 (not application/json) / 400 (empty, not UTF-8,
    not JSON, nested deeper than 32, a number of more than 4,300 digits) with the reason."""
    from fastapi import HTTPException

    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(
            415, f"content type {media or '(none)'} is not accepted: send application/json like {example}"
        )
    body = await request.body()
    if not body.strip():
        raise HTTPException(400, f"the body is empty: send JSON like {example}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HTTPException(400, f"the body is not UTF-8 (byte {e.start}): JSON must be UTF-8") from e
    if not _json_depth_ok(text, MAX_JSON_DEPTH):
        raise HTTPException(
            400, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels: send JSON like {example}"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise HTTPException(
            400, f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4,300 digits
        raise HTTPException(400, f"the JSON holds a value that cannot be read: {str(e)[:120]}") from e


# --- Request body size limit ------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps(error_body(status, detail)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The rest of the body is not read: the connection cannot carry another request.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, whether or not it has a Content-Length.

    A declared Content-Length over the limit is refused before reading; a body without one is
    counted as it arrives, and reading stops at the limit (the route's own 400 becomes our 413).
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_bytes:,} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _send_error(
                    send, 400, f"invalid Content-Length {declared.decode(errors='replace')!r}"
                )
            if int(declared) > self.max_bytes:
                return await _send_error(
                    send, 413, self._too_large() + f" (Content-Length {int(declared):,})"
                )
        received, tripped, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    tripped = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if tripped:  # whatever the route made of the cut-off body, the answer is 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await _send_error(send, 413, self._too_large())


# --- Batching concurrent requests -------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs ``fn`` on batches of the items that concurrent requests submit: ``await batcher.submit(x)``.

    One worker thread takes every item waiting (up to ``max_batch``) and calls ``fn(items)`` once,
    which must return one result per item. Nothing waits for a batch to fill: while one batch runs,
    the next one gathers, so under load the model sees batches, and a lone request goes at once.
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], max_batch: int = 32) -> None:
        self.fn, self.max_batch = fn, max_batch
        self._queue: queue.SimpleQueue[tuple[T, concurrent.futures.Future[R]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    async def submit(self, item: T) -> R:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        self._queue.put((item, future))
        return await asyncio.wrap_future(future)

    def _next_batch(self) -> list[tuple[T, concurrent.futures.Future[R]]] | None:
        """The items waiting (at least one: this blocks), or None once closed."""
        batch: list[tuple[T, concurrent.futures.Future[R]]] = []
        entry = self._queue.get()
        while entry is not None:
            if entry[1].set_running_or_notify_cancel():  # False: the request is gone (client left)
                batch.append(entry)
            if len(batch) == self.max_batch:
                break
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                break
        else:  # closed: finish this batch, and stop at the next call
            if not batch:
                return None
            self._queue.put(None)
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            try:
                results = self.fn([item for item, _ in batch])
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            except Exception as e:  # every request of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)

    def close(self) -> None:
        """Finish the batches already submitted, then stop the worker thread."""
        self._queue.put(None)
        self._thread.join()


# --- The app ----------------------------------------------------------------------------------------


class BatchedService(Generic[T, R]):
    """What a server keeps loaded: a ``predictor`` and a :class:`MicroBatcher` in front of its model.

    ``batch_fn`` maps a list of prepared inputs to their outputs in one pass, so requests that arrive
    while the model is busy run together (on a CPU, one batch of 16 costs far less than 16 passes).
    ``describe()`` is the predictor's (for /health); ``close()`` stops the batcher at shutdown.
    """

    def __init__(self, predictor: Any, batch_fn: Callable[[list[T]], list[R]], max_batch: int = 32) -> None:
        self.predictor = predictor
        self.batcher: MicroBatcher[T, R] = MicroBatcher(batch_fn, max_batch)

    def describe(self) -> Any:
        return self.predictor.describe()

    def close(self) -> None:
        self.batcher.close()


def _describe(model: Any) -> Any:
    """What /health says about the loaded object: its ``describe()``, else its ``metadata``, else its type."""
    if callable(getattr(model, "describe", None)):
        return model.describe()
    return getattr(model, "metadata", None) or {"type": type(model).__name__}


def _validation_detail(errors: Any) -> str:
    """FastAPI's validation errors as one line: ``query.top_k: Input should be ... (got 'abc')``."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        got = f" (got {error['input']!r})" if "input" in error and error["input"] is not None else ""
        parts.append(f"{where}: {error.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: "FastAPI") -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(error_body(exc.status_code, detail), exc.status_code, headers=exc.headers)

    async def validation_error(request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(error_body(422, _validation_detail(exc.errors())), 422)

    async def server_error(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"{type(exc).__name__}; the server log has the details"), 500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


def create_app(
    *,
    title: str,
    load: Callable[[], Any],
    page_html: str | None = None,
    describe: Callable[[Any], Any] = _describe,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> "FastAPI":
    """A FastAPI app that loads its model once, limits bodies, answers errors as JSON, and has /health.

    ``load()`` runs once, in the app's lifespan (when the server starts, or when a TestClient is
    entered), and its result is ``app.state.model`` (its ``close()``, if any, runs at shutdown).
    ``page_html`` (see :func:`html_page`) is served at ``GET /``; ``describe(model)`` is what
    ``GET /health`` reports about the model.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        app.state.model = load()
        yield
        if callable(getattr(app.state.model, "close", None)):
            app.state.model.close()
        app.state.model = None

    app = FastAPI(title=title, lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    _add_error_handlers(app)

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "model": describe(request.app.state.model)}

    if page_html is not None:

        @app.get("/", response_class=HTMLResponse)
        def index() -> str:
            return page_html

    return app


# --- The HTML page ----------------------------------------------------------------------------------

_STYLE = """
:root { --accent: #2f6fd6; --ink: #1d2433; --muted: #5b6475; --line: #dde2ea; --bg: #f5f7fb;
        --bad: #b3261e; --good: #1e7b3a; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--bg); margin: 0; line-height: 1.5; }
header { background: #fff; border-bottom: 1px solid var(--line); }
header .inner, main, footer { max-width: 46rem; margin: 0 auto; padding: 0 1.25rem; }
header .inner { display: flex; align-items: baseline; gap: .75rem; padding-top: 1rem; padding-bottom: 1rem; }
header h1 { font-size: 1.35rem; margin: 0; }
header .tag { color: var(--muted); font-size: .9rem; }
main { padding-top: 1.5rem; padding-bottom: 2rem; }
.intro { color: var(--muted); margin: 0 0 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 1.25rem;
        box-shadow: 0 1px 2px rgba(20, 30, 50, .04); margin-bottom: 1rem; }
label.field { display: block; font-weight: 600; margin-bottom: .4rem; }
textarea, input[type=text], input[type=number] { width: 100%; font: inherit; padding: .6rem .7rem;
        border: 1px solid var(--line); border-radius: 8px; background: #fff; }
textarea { min-height: 9rem; resize: vertical; }
button { font: inherit; font-weight: 600; color: #fff; background: var(--accent); border: 0;
         border-radius: 8px; padding: .55rem 1.1rem; cursor: pointer; margin-top: .75rem; }
button:disabled { opacity: .6; cursor: progress; }
#result:empty { display: none; }
.verdict { font-size: 1.25rem; font-weight: 700; margin: 0 0 .75rem; }
.bar { display: grid; grid-template-columns: 9rem 1fr 4rem; gap: .6rem; align-items: center;
       margin: .35rem 0; }
.bar-track { background: #edf0f5; border-radius: 4px; height: 1.1rem; overflow: hidden; }
.bar-fill { background: var(--accent); border-radius: 4px; height: 100%; }
.bar-value { text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
.error { color: var(--bad); background: #fdf0ef; border: 1px solid #f3c7c3; border-radius: 8px;
         padding: .6rem .8rem; margin: 0; }
.note { color: var(--muted); font-size: .92rem; }
.dropzone { display: block; border: 2px dashed #b8c1d1; border-radius: 10px; padding: 1.5rem;
            text-align: center; color: var(--muted); cursor: pointer; background: #fafbfd; }
.dropzone.over { border-color: var(--accent); background: #eef4ff; }
#preview { max-width: 12rem; max-height: 12rem; margin: 1rem auto 0; display: block;
           image-rendering: pixelated; border-radius: 6px; }
footer { color: var(--muted); font-size: .85rem; padding-bottom: 2rem; }
"""

# A tiny inline icon, so that browsers do not ask the server for /favicon.ico (a 404 in every log).
_FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='3' fill='%232f6fd6'/%3E%3C/svg%3E"
)

# showBars(target, [{label, probability}]) draws one bar per class; showError(target, message).
# textContent, never innerHTML: labels and messages are data, not markup.
_BARS_SCRIPT = """
function showBars(target, predictions) {
  target.replaceChildren();
  for (const p of predictions) {
    const row = document.createElement("div"); row.className = "bar";
    const label = document.createElement("span"); label.className = "bar-label"; label.textContent = p.label;
    const track = document.createElement("div"); track.className = "bar-track";
    const fill = document.createElement("div"); fill.className = "bar-fill";
    fill.style.width = (100 * p.probability).toFixed(1) + "%"; track.append(fill);
    const value = document.createElement("span"); value.className = "bar-value";
    value.textContent = (100 * p.probability).toFixed(1) + "%";
    row.append(label, track, value); target.append(row);
  }
}
function showError(target, message) {
  const p = document.createElement("p"); p.className = "error"; p.textContent = message;
  target.replaceChildren(p);
}
"""


def html_page(
    *, title: str, form: str, script: str, intro: str = "", footer: str = "", style: str = ""
) -> str:
    """A small product page: a header with the ``title``, an ``intro``, the project's ``form`` (HTML) in a
    card, a ``#result`` card (hidden while empty), its ``script``, and a ``footer`` line.

    The page's script can call ``showBars(target, predictions)`` to draw a bar per class from a list
    of ``{label, probability}``, and ``showError(target, message)`` to show an error where the result
    would be. ``style`` is CSS of the project's own, after the template's.
    """
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{_FAVICON}">
<title>{html.escape(title)}</title><style>{_STYLE}{style}</style></head>
<body>
<header><div class="inner"><h1>{html.escape(title)}</h1>
<span class="tag">Deep Learning with PyTorch</span></div></header>
<main>
<p class="intro">{html.escape(intro)}</p>
<section id="form" class="card">{form}</section>
<section id="result" class="card" aria-live="polite"></section>
</main>
<footer>{html.escape(footer)}</footer>
<script>{_BARS_SCRIPT}</script>
<script>{script}</script>
</body>
</html>
"""
