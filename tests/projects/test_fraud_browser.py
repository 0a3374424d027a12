"""The fraud detector's page in a real browser: upload a CSV of transactions, see the score histogram with
the threshold, the highest-scored rows with their most unusual values, and the rows skipped; a file
without the model's columns shows the reason where the result would be.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free port
of 127.0.0.1 (tests/projects/_server.py). Screenshots go to $DLKIT_SCREENSHOTS (default: a temp folder).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from _server import browser_page, require_browser, running_server
from conftest import ROOT

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

require_browser()
httpx = pytest.importorskip("httpx")

from dlkit.tabular import synthetic_transactions, write_table
from projects.fraud_detector import export, train
from projects.fraud_detector.serve import ServeConfig, build_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DLKIT_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    data = synthetic_transactions(2000, 0.01, seed=31)
    good = write_table(folder / "transactions.csv", data.x.numpy(), data.features)
    lines = good.read_text().splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0] + ","  # line 8: Amount missing
    good.write_text("\n".join(lines) + "\n")
    wrong = write_table(folder / "wrong.csv", np.zeros((3, 2)), ["amount", "merchant"])
    return {"good": good, "wrong": wrong}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A quick autoencoder run on synthetic transactions, released without ONNX, served."""
    root = tmp_path_factory.mktemp("fraud_browser")
    train.main(["--quick", "--runs-dir", str(root), "--run-name", "ae", "--threads", "1"])
    assert export.main(["--run-dir", str(root / "ae"), "--out", str(root / "release"), "--no-onnx"]) == 0
    with running_server(
        build_app(ServeConfig(release=str(root / "release"), device="cpu", top_rows=10))
    ) as url:
        yield url


def upload(page: Page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.click("#submit")


def test_the_page_loads_without_errors(server_url: str) -> None:
    failed: list[str] = []
    with browser_page("about:blank") as page:
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
        page.goto(server_url)
        page.wait_for_load_state("networkidle")
        note = page.locator("#model-note").text_content()
    assert failed == []  # no 404 (favicon) and no script error
    assert note and "threshold" in note and "29 features" in note


def test_an_uploaded_csv_shows_histogram_threshold_and_top_rows(server_url: str, files, shots: Path) -> None:
    api = httpx.post(
        server_url + "score-file",
        files={"file": ("t.csv", files["good"].read_bytes(), "text/csv")},
        timeout=60,
    ).json()
    with browser_page(server_url) as page:
        page.set_viewport_size({"width": 1100, "height": 1300})
        upload(page, files["good"])
        page.wait_for_selector("tr.top-row")
        assert page.locator("#flagged-count").text_content() == f"{api['flagged']:,} flagged"
        assert f"{api['rows_scored']:,} rows scored" in page.locator(".summary").text_content()
        bars = page.locator("svg.hist rect.bar")
        assert bars.count() == sum(1 for c in api["histogram"]["counts"] if c > 0)
        assert page.locator("#threshold-line").count() == 1
        assert page.locator("svg.hist rect.bar.over").count() > 0  # bars at or above the threshold in red
        rows = page.locator("tr.top-row")
        assert rows.count() == 10
        first = rows.nth(0).locator("td").all_text_contents()
        assert first[0] == str(api["top"][0]["line"]) and "(" in first[3]  # "V14 = -9.1 (-8.7)"
        assert page.locator("ul.skipped li").first.text_content().startswith("line 8: Amount")
        page.screenshot(path=str(shots / "fraud_result.png"), full_page=True)


def test_a_file_without_the_models_columns_shows_the_reason(server_url: str, files, shots: Path) -> None:
    with browser_page(server_url) as page:
        page.click("#submit")  # nothing chosen yet
        assert "Choose a CSV file" in page.wait_for_selector("#result .error").text_content()
        upload(page, files["wrong"])
        # While the file is scored, #result holds "Scoring..." and no .error: the check must not throw then.
        page.wait_for_function(
            "(document.querySelector('#result .error')?.textContent || '').includes('lacks')"
        )
        error = page.locator("#result .error").text_content()
        assert (
            "lacks 29 of the model's 29 feature columns: V1, V2" in error
            and "names: amount, merchant" in error
            and page.locator("svg.hist").count() == 0
        )
        page.screenshot(path=str(shots / "fraud_error.png"), full_page=True)
