"""The recommender's page in a real browser: search titles, mark a few as liked, get recommendations,
ask for "more like this"; nothing fails to load; a server error shows where the result would be.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free
port of 127.0.0.1 (tests/projects/_server.py). Skipped when Chromium is not installed. Screenshots
go to $DLKIT_SCREENSHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _server import browser_page, require_browser, running_server
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

require_browser()

from projects.recommendation_system import export, train
from projects.recommendation_system.serve import ServeConfig, build_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DLKIT_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rec")
    train.main(["--quick", "--model", "ranker", "--runs-dir", str(root), "--run-name", "run"])
    assert export.main(["--run-dir", str(root / "run"), "--out", str(root / "release"), "--no-onnx"]) == 0
    with running_server(build_app(ServeConfig(release=str(root / "release"), device="cpu"))) as url:
        yield url


@pytest.fixture
def page(server_url: str) -> Iterator[Page]:
    with browser_page(server_url) as page:
        page.set_viewport_size({"width": 1000, "height": 1200})
        yield page


def like(page: Page, query: str) -> None:
    page.fill("#query", query)
    page.click("#search")
    first = page.locator("#found li").first
    first.get_by_role("button", name="I liked it").click()


def test_search_like_and_get_recommendations(server_url: str, shots: Path) -> None:
    failed: list[str] = []
    with browser_page(server_url) as page:
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
        page.set_viewport_size({"width": 1000, "height": 1200})
        page.goto(server_url)
        assert page.locator("#recommend").is_disabled()  # nothing liked yet
        like(page, "synthetic movie 12")
        assert page.locator("#found li").first.locator(".title").inner_text() == "Synthetic movie 12 (1962)"
        like(page, "movie 40")
        chips = page.locator("#liked .chip")
        assert chips.count() == 2 and "Synthetic movie 12 (1962)" in chips.first.inner_text()
        page.click("#recommend")
        items = page.locator("#recommendations li")
        items.first.wait_for()
        assert page.locator("#result h2").inner_text() == "Recommended for you"
        assert items.count() == 10
        titles = [items.nth(i).locator(".title").inner_text() for i in range(10)]
        assert all(t.startswith("Synthetic movie ") and t.endswith(")") for t in titles)
        assert "Synthetic movie 12 (1962)" not in titles  # liked movies are left out
        page.screenshot(path=str(shots / "recommender_recommendations.png"), full_page=True)
        items.first.get_by_role("button", name="More like this").click()
        page.wait_for_function("document.querySelector('#result h2').textContent.startsWith('More like')")
        assert page.locator("#result h2").inner_text() == f"More like {titles[0]}"
        assert page.locator("#recommendations li").count() == 10
        chips.first.get_by_role("button").click()  # remove a liked movie
        assert chips.count() == 1
    assert failed == []  # no 404 on load (favicon included), no script error


def test_no_match_and_server_errors_show_where_the_result_would_be(page: Page) -> None:
    page.fill("#query", "zzzz qqqq")
    page.click("#search")
    assert "No title matches" in page.locator("#found li").first.inner_text()
    like(page, "synthetic movie 12")
    page.route("**/recommendations", lambda route: route.fulfill(
        status=422, content_type="application/json",
        body='{"error": "Unprocessable Entity", "detail": "liked holds 101 movies; the limit is 100"}',
    ))  # fmt: skip
    page.click("#recommend")
    error = page.locator("#result .error")
    error.wait_for()
    assert error.inner_text() == "liked holds 101 movies; the limit is 100"
