"""The sentiment analyzer's page in a real browser: type a review, submit, see the sentiment as bars.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free
port of 127.0.0.1 (tests/projects/_server.py); ``playwright install`` is never needed. Skipped when
Chromium is not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from _server import browser_page, require_browser, running_server
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

require_browser()
httpx = pytest.importorskip("httpx")

from projects.sentiment_analyzer import export, train
from projects.sentiment_analyzer.serve import build_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A quick nbsvm run on synthetic reviews, released without ONNX (not needed here), served."""
    root = tmp_path_factory.mktemp("sentiment")
    train.main(["--quick", "--runs-dir", str(root), "--run-name", "run"])
    assert export.main(["--run-dir", str(root / "run"), "--out", str(root / "release"), "--no-graphs"]) == 0
    with running_server(build_app(root / "release", max_chars=200)) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Page]:
    with browser_page(server_url) as page:
        yield page


def submit(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#submit")


def test_a_review_shows_its_sentiment_as_bars(page: Page, server_url: str) -> None:
    review = "A wonderful, moving film with a superb cast. I loved it!"
    api = httpx.post(server_url + "predict", json={"text": review}, timeout=30).json()
    submit(page, review)
    page.wait_for_selector(".bar-label")
    labels = page.locator(".bar-label").all_text_contents()
    assert labels[0] == api["label"] and sorted(labels) == ["neg", "pos"]
    values = page.locator(".bar-value").all_text_contents()
    assert values[0] == f"{100 * api['probability']:.1f}%"
    assert page.get_attribute("#result", "data-label") == api["label"]
    assert page.locator(".note").count() == 0


def test_a_long_review_shows_a_note_and_an_empty_one_the_reason(page: Page) -> None:
    submit(page, "great " * 100)
    page.wait_for_selector(".note")
    assert "only the first 200" in page.locator(".note").first.text_content()
    submit(page, "   ")
    error = page.wait_for_selector(".error")
    assert error is not None and "only whitespace" in (error.text_content() or "")
    assert page.locator(".bar").count() == 0 and page.locator(".note").count() == 0
