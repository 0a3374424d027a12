"""The sentiment analyzer's page in a real browser: paste a review, see the sentiment in words, how sure
the model is, and the words that pushed it each way highlighted in the review; errors where the result
would be.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free
port of 127.0.0.1 (tests/projects/_server.py); ``playwright install`` is never needed. Skipped when
Chromium is not installed. Screenshots go to $DLKIT_SCREENSHOTS (default: the test's temp folder).
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
httpx = pytest.importorskip("httpx")

from projects.sentiment_analyzer import export, train
from projects.sentiment_analyzer.serve import ServeConfig, build_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DLKIT_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A quick nbsvm run on synthetic reviews, released without ONNX (not needed here), served."""
    root = tmp_path_factory.mktemp("sentiment")
    train.main(["--quick", "--runs-dir", str(root), "--run-name", "run"])
    assert export.main(["--run-dir", str(root / "run"), "--out", str(root / "release"), "--no-onnx"]) == 0
    with running_server(
        build_app(ServeConfig(release=str(root / "release"), max_chars=300, device="cpu"))
    ) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Page]:
    with browser_page(server_url) as page:
        page.set_viewport_size({"width": 1000, "height": 1100})
        yield page


def submit(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#submit")


def test_the_page_loads_without_errors_and_the_text_box_is_wide(server_url: str) -> None:
    failed: list[str] = []
    with browser_page("about:blank") as page:
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
        page.goto(server_url)
        page.wait_for_load_state("networkidle")
        box = page.locator("#text").bounding_box()
    assert failed == []  # no 404 (favicon) and no script error
    assert box is not None and box["width"] >= 500  # not the ~180 px of a bare textarea


def test_a_review_shows_its_sentiment_in_words_and_the_words_that_pushed_it(
    page: Page, server_url: str, shots: Path
) -> None:
    review = "A wonderful, moving film with a superb cast. The plot was a bit dull, but I loved it!"
    api = httpx.post(server_url + "predict", json={"text": review}, timeout=30).json()
    submit(page, review)
    page.wait_for_selector(".bar-label")
    human = {"pos": "Positive", "neg": "Negative"}
    assert page.locator(".verdict").text_content().startswith(human[api["label"]])
    labels = page.locator(".bar-label").all_text_contents()
    assert labels[0] == human[api["label"]] and sorted(labels) == ["Negative", "Positive"]  # never pos/neg
    assert page.locator(".bar-value").all_text_contents()[0] == f"{100 * api['probability']:.1f}%"
    assert page.get_attribute("#result", "data-label") == api["label"]
    assert page.locator(".review").text_content() == review  # the whole review, marks inside
    assert page.locator("mark.pos").count() > 0 and page.locator("mark.neg").count() > 0
    evidence = api["evidence"]["positive"] + api["evidence"]["negative"]
    strongest = max(evidence, key=lambda e: abs(e["contribution"]))  # painted last: always visible
    titles = page.locator("mark").evaluate_all("marks => marks.map(m => m.title)")
    assert any(t.startswith(strongest["ngram"] + ": ") for t in titles)
    assert "wonderful" in page.locator(".sides").text_content()
    page.screenshot(path=str(shots / "sentiment_result.png"), full_page=True)


def test_a_long_review_shows_a_note_and_an_empty_one_the_reason_where_the_result_goes(
    page: Page, shots: Path
) -> None:
    submit(page, "great " * 100)
    page.wait_for_selector("#result .notes")
    assert "only the first 300" in page.locator("#result .notes").text_content()
    submit(page, "   ")
    error = page.wait_for_selector("#result .error")
    assert error is not None and "only whitespace" in (error.text_content() or "")
    assert page.locator(".bar").count() == 0 and page.locator("#result .notes").count() == 0
    page.screenshot(path=str(shots / "sentiment_error.png"), full_page=True)


def test_an_example_button_fills_the_box_and_classifies(page: Page) -> None:
    page.click("button.example >> nth=1")  # "a pan"
    page.wait_for_selector(".verdict.negative")
    assert "waste" in page.input_value("#text") and page.locator(".verdict").text_content().startswith(
        "Negative"
    )
