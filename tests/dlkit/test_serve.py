"""dlkit.serve: the model loads once, bad uploads get the right 4xx with a reason, the server keeps going."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
from fastapi import Query, Request
from fastapi.testclient import TestClient
from PIL import Image

from dlkit.serve import (
    ImageRejected,
    MicroBatcher,
    PixelBudget,
    create_app,
    decode_image,
    decode_within,
    html_page,
    read_image_request,
    read_json_request,
)

MAX_BODY = 64 * 1024


class FakeModel:
    """Stands in for a predictor: remembers how often it was built, describes itself."""

    loads = 0
    closed = 0

    def __init__(self) -> None:
        FakeModel.loads += 1

    def close(self) -> None:
        FakeModel.closed += 1

    def describe(self) -> dict[str, Any]:
        return {"name": "fake", "classes": ["a", "b"]}


def make_app() -> Any:
    page = html_page(title="Echo <test>", form='<input type="file" id="file">', script="// nothing")
    app = create_app(title="echo", load=FakeModel, page_html=page, max_body_bytes=MAX_BODY)

    @app.post("/json")
    async def echo_json(request: Request) -> dict[str, Any]:
        return {"got": await read_json_request(request)}

    @app.post("/echo")
    async def echo(request: Request, top_k: int = Query(3, ge=1, le=10)) -> dict[str, Any]:
        image = await read_image_request(request, max_pixels=1_000_000)
        return {"size": list(image.size), "mode": image.mode, "top_k": top_k}

    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as c:  # `with` runs the lifespan: the model loads here
        yield c


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming ``width`` x ``height``, then one tiny IDAT: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


PNG = encode(Image.new("RGB", (20, 10), (200, 30, 30)))


def upload(client: TestClient, data: bytes, content_type: str = "image/png", **params: Any) -> Any:
    return client.post("/echo", files={"file": ("x", data, content_type)}, params=params)


def assert_error(response: Any, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert reason in body["detail"], body["detail"]


def test_model_loads_once_and_health_reports_it(client: TestClient) -> None:
    for _ in range(3):
        response = client.get("/health")
        assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": {"name": "fake", "classes": ["a", "b"]}}
    assert FakeModel.loads == 1 and FakeModel.closed == 0


def test_model_is_closed_at_shutdown() -> None:
    closed = FakeModel.closed
    with TestClient(make_app()) as c:
        assert c.get("/health").status_code == 200
    assert FakeModel.closed == closed + 1


def test_page_is_served_with_escaped_title_and_bars(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "Echo &lt;test&gt;" in response.text and "function showBars" in response.text
    assert '<input type="file" id="file">' in response.text


def test_good_images_are_decoded(client: TestClient) -> None:
    assert upload(client, PNG).json() == {"size": [20, 10], "mode": "RGB", "top_k": 3}
    raw = client.post("/echo", content=PNG, headers={"content-type": "image/png"})  # bytes as the body
    assert raw.status_code == 200 and raw.json()["size"] == [20, 10]
    octet = upload(client, PNG, "application/octet-stream")  # what some clients send for any file
    assert octet.status_code == 200


def test_exif_orientation_is_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    jpeg = encode(Image.new("RGB", (40, 10)), "JPEG", exif=exif)
    assert upload(client, jpeg, "image/jpeg").json()["size"] == [10, 40]


BAD_REQUESTS = {
    "empty file": (lambda c: upload(c, b""), 400, "empty"),
    "truncated png": (lambda c: upload(c, encode(Image.effect_noise((64, 64), 50))[:600]), 400, "truncated"),
    "text file": (lambda c: upload(c, b"hello", "text/plain"), 415, "not an image"),
    "text claiming png": (lambda c: upload(c, b"hello, not a picture"), 415, "format"),
    "ppm image": (lambda c: upload(c, encode(Image.new("RGB", (4, 4)), "PPM")), 415, "format"),
    "json body": (lambda c: c.post("/echo", json={"image": "x"}), 415, "multipart/form-data"),
    "no content type": (lambda c: c.post("/echo", content=b"abc", headers={"content-type": ""}), 415, "none"),
    "no file field": (lambda c: c.post("/echo", files={"other": ("x", PNG, "image/png")}), 422, "'file'"),
    "text field": (lambda c: c.post("/echo", data={"file": "abc"}, files={"x": ("x", b"1")}), 422, "text"),
    "bad query": (lambda c: upload(c, PNG, top_k="many"), 422, "top_k"),
    "query out of range": (lambda c: upload(c, PNG, top_k=0), 422, "greater than or equal to 1"),
    "50 megapixels": (lambda c: upload(c, png_header_only(10_000, 5_000)), 413, "50.0 megapixels"),
    "over Content-Length": (lambda c: upload(c, b"\0" * (MAX_BODY + 1)), 413, "over the limit"),
    "over, chunked": (
        lambda c: c.post("/echo", content=iter([b"\0" * 4096] * 32), headers={"content-type": "image/png"}),
        413,
        "over the limit",
    ),
    "malformed multipart": (
        lambda c: c.post("/echo", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}),
        400,
        "",
    ),
    "unknown route": (lambda c: c.get("/nothing"), 404, "Not Found"),
    "wrong method": (lambda c: c.get("/echo"), 405, "Method Not Allowed"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_a_reason_and_the_server_keeps_answering(client: TestClient, name: str) -> None:
    send, status, reason = BAD_REQUESTS[name]
    assert_error(send(client), status, reason)
    assert client.get("/health").status_code == 200
    assert upload(client, PNG).status_code == 200


def test_a_real_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = encode(Image.new("1", (8_000, 6_250)))  # 50 megapixels of 1-bit zeros: a few KB of PNG
    assert len(bomb) < 100_000
    with pytest.raises(ImageRejected, match="50.0 megapixels") as info:
        decode_image(bomb)  # default limit 40 megapixels
    assert info.value.status == 413


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "LA", "I;16", "1", "CMYK"])
def test_decode_image_keeps_each_mode(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = decode_image(encode(Image.new(mode, (7, 300)), fmt))
    assert image.size == (7, 300) and image.mode == mode


def test_micro_batcher_groups_concurrent_requests() -> None:
    sizes: list[int] = []

    def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.02)  # while this batch runs, the next one gathers
        return [2 * item for item in items]

    batcher = MicroBatcher(double, max_batch=8)

    async def send_all() -> list[int]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(40)))

    try:
        assert asyncio.run(send_all()) == [2 * i for i in range(40)]
    finally:
        batcher.close()
    assert sum(sizes) == 40 and max(sizes) == 8 and len(sizes) < 40


def test_micro_batcher_gives_each_request_the_error_and_keeps_going() -> None:
    def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("13 is unlucky")
        return items

    batcher = MicroBatcher(picky)
    try:
        with pytest.raises(ValueError, match="unlucky"):
            asyncio.run(batcher.submit(13))
        assert asyncio.run(batcher.submit(7)) == 7
    finally:
        batcher.close()


def test_micro_batcher_skips_requests_whose_client_left() -> None:
    seen: list[list[int]] = []

    def slow(items: list[int]) -> list[int]:
        seen.append(items)
        time.sleep(0.1)
        return items

    batcher = MicroBatcher(slow)

    async def scenario() -> list[int]:
        busy = asyncio.ensure_future(batcher.submit(1))  # occupies the worker for 0.1 s
        await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(2), 0.01)  # given up while waiting
        return [await busy, await batcher.submit(3)]

    try:
        assert asyncio.run(scenario()) == [1, 3]
    finally:
        batcher.close()
    assert [2] not in seen and all(2 not in items for items in seen)


def test_batched_service_describes_its_predictor_and_batches():
    import asyncio

    from dlkit.serve import BatchedService

    class Doubler:
        def describe(self) -> dict:
            return {"name": "doubler"}

    calls: list[int] = []

    def batch_fn(xs: list[int]) -> list[int]:
        calls.append(len(xs))
        return [2 * x for x in xs]

    service = BatchedService(Doubler(), batch_fn, max_batch=8)
    try:

        async def ask() -> list[int]:
            return list(await asyncio.gather(*(service.batcher.submit(i) for i in range(5))))

        assert asyncio.run(ask()) == [0, 2, 4, 6, 8]
        assert service.describe() == {"name": "doubler"} and sum(calls) == 5
    finally:
        service.close()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"text": ' + b"1" * 5000 + b"}", 400, "cannot be read"),  # int() refuses > 4,300 digits
        (b"[" * 50_000, 400, "nests deeper than 32"),  # json.loads would hit RecursionError
        (b'{"text": "\xff"}', 400, "not UTF-8"),
        (b"", 400, "empty"),
        (b"{nope", 400, "not valid JSON"),
    ],
)
def test_hostile_json_is_a_4xx_with_a_reason(
    client: TestClient, body: bytes, status: int, reason: str
) -> None:
    response = client.post("/json", content=body, headers={"content-type": "application/json"})
    assert_error(response, status, reason)
    assert client.post("/json", json={"text": "[[[ fine ]]]", "n": [[1]]}).json() == {
        "got": {"text": "[[[ fine ]]]", "n": [[1]]}
    }  # and it keeps answering


def test_json_needs_its_content_type(client: TestClient) -> None:
    assert_error(
        client.post("/json", content=b"{}", headers={"content-type": "text/plain"}), 415, "application/json"
    )


def test_pixel_budget_bounds_the_decoded_pixels_in_flight() -> None:
    import threading

    budget = PixelBudget(max_pixels=250)
    peak, lock = [0], threading.Lock()
    image = encode(Image.new("RGB", (10, 10)))  # 100 pixels

    def convert(decoded: Image.Image) -> tuple[int, int]:
        with lock:
            peak[0] = max(peak[0], budget.in_flight)
        time.sleep(0.02)
        return decoded.size

    threads = [
        threading.Thread(target=decode_within, args=(image, budget), kwargs={"convert": convert})
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 200  # two 100-pixel images at a time fit in 250; a third waits
    assert budget.in_flight == 0
    assert decode_within(image, None, convert=lambda im: im.size) == (10, 10)
