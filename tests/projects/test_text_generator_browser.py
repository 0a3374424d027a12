"""The text generator's page in a real browser: type a prompt, watch the text appear as it streams.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free
port of 127.0.0.1. Skipped when Chromium is not installed. ``DLKIT_SCREENSHOTS=DIR`` saves what the
page looked like (to look at; never in the repository).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _server import browser_page, require_browser, running_server
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

require_browser()
httpx = pytest.importorskip("httpx")

from test_text_generator_serve import make_release  # noqa: E402

from projects.text_generator.serve import GenerationService, ServeConfig, build_app  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    release = make_release(tmp_path_factory.mktemp("release"))
    # The test release samples a character in microseconds, a real one in milliseconds: on a busy machine
    # the browser could read all 150 characters in one piece, and "it arrives in pieces" would be a race.
    # Paced like a real model (5 ms a character), the page's progressive display is what is tested.
    unpaced = GenerationService.stream

    def paced(self: GenerationService, settings: dict) -> Iterator[str]:
        for char in unpaced(self, settings):
            time.sleep(0.005)
            yield char

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GenerationService, "stream", paced)
        with running_server(build_app(ServeConfig(release=str(release), device="cpu"))) as url:
            yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Page]:
    with browser_page(server_url) as page:
        yield page


def _screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("DLKIT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"text_generator_{name}.png"), full_page=True)


def test_the_page_loads_without_a_failed_request(page: Page) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.reload()
    page.wait_for_function("document.getElementById('model-note').textContent.length > 0")
    assert failed == []
    assert "none: untrained" in (page.text_content("#model-note") or "")


def test_the_text_streams_into_the_page_as_the_api_makes_it(page: Page, server_url: str) -> None:
    settings = {"prompt": "ROMEO:", "num_chars": 150, "temperature": 0.9, "top_k": 10, "seed": 11}
    expected = httpx.post(server_url + "generate", json=settings, timeout=60).text
    page.fill("#prompt", "ROMEO:")
    for field in ("num_chars", "temperature", "top_k", "seed"):
        page.fill(f"#{field}", str(settings[field]))
    page.click("#generate")
    page.wait_for_function("document.getElementById('status')?.textContent.includes('seed 11')")
    assert page.text_content("#generated") == expected and len(expected) == 150
    assert page.text_content("#output .prompt") == "ROMEO:"
    assert int(page.get_attribute("#result", "data-chunks") or 0) > 1  # it arrived in pieces
    assert page.is_enabled("#generate") and not page.is_enabled("#stop")
    _screenshot(page, "streamed")


def test_a_bad_prompt_shows_the_reason_where_the_text_would_be(page: Page) -> None:
    page.fill("#prompt", "Hello €uro")
    page.click("#generate")
    error = page.wait_for_selector("#result .error")
    assert error is not None
    message = error.text_content() or ""
    assert "Unprocessable" in message and "never saw" in message and "'€'" in message
    assert page.locator("#generated").count() == 0
    _screenshot(page, "error")
