"""The image classifier's page in a real browser: upload an image, see the predicted classes as bars.

Drives Debian's Chromium (/usr/bin/chromium) through Playwright against a uvicorn server on a free
port of 127.0.0.1; ``playwright install`` is never needed. Skipped when Chromium is not installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from _server import browser_page, require_browser, running_server
from conftest import ROOT
from PIL import Image

if str(ROOT) not in sys.path:  # `projects` is imported from the repository root
    sys.path.insert(0, str(ROOT))

require_browser()
httpx = pytest.importorskip("httpx")

from dlkit.data import CIFAR10_CLASSES
from dlkit.export import save_release
from projects.image_classifier.models import build_model
from projects.image_classifier.serve import ServeConfig, build_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(os.environ.get("DLKIT_SCREENSHOTS", "/tmp"))  # look at them; never in the repository


def make_release(folder: Path) -> Path:
    """A release of an untrained small resnet_small for CIFAR-10's classes (what export writes)."""
    torch.manual_seed(0)
    kwargs = {"widths": [8, 16, 16]}
    model = build_model("resnet_small", 10, 3, **kwargs)
    metadata = {
        "architecture": {"name": "resnet_small", "kwargs": kwargs},
        "num_classes": 10,
        "in_channels": 3,
        "classes": list(CIFAR10_CLASSES),
        "preprocessing": {"size": [32, 32], "channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
        "dataset": "none: untrained, for a browser test",
        "dataset_name": "none",
        "metrics": {"test_acc": 0.1, "test_acc_tta": 0.1},
    }
    return save_release(model, metadata, folder)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A uvicorn server in a thread, on a port the OS chose (no race for a 'free' port)."""
    release = make_release(tmp_path_factory.mktemp("release"))
    with running_server(build_app(ServeConfig(release=str(release), device="cpu"))) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Page]:
    with browser_page(server_url) as page:
        yield page


def test_page_loads_without_a_failed_request_and_says_what_the_model_is(page: Page) -> None:
    filled = "!document.querySelector('footer').textContent.includes('loading')"
    page.wait_for_function(filled)  # the first load is over: reloading cancels nothing
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
    page.reload()
    page.wait_for_function(filled)
    assert failed == []  # no favicon 404, nothing else
    footer = page.text_content("footer") or ""
    assert "resnet_small" in footer and "test accuracy 10.0%" in footer and "cpu" in footer
    assert "10 classes" in (page.text_content(".intro") or "")
    assert not page.is_visible("#result") and not page.is_visible("#preview")
    page.screenshot(path=str(SCREENSHOTS / "image_classifier_empty.png"), full_page=True)


def test_uploaded_image_shows_the_verdict_and_the_predicted_labels_as_bars(
    page: Page, server_url: str, tmp_path: Path
) -> None:
    image = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (220, 30, 30)).save(image)
    with image.open("rb") as f:
        api = httpx.post(
            server_url + "predict?top_k=5", files={"file": ("red.png", f, "image/png")}, timeout=30
        )
    assert api.status_code == 200
    expected = [p["label"] for p in api.json()["predictions"]]

    page.set_input_files("#file", str(image))
    page.wait_for_selector(".bar-label")
    labels = page.locator(".bar-label").all_text_contents()
    assert labels == expected
    values = page.locator(".bar-value").all_text_contents()
    assert len(values) == 5 and all(v.endswith("%") for v in values)
    assert (page.text_content(".verdict") or "").startswith(f"Most likely {expected[0]} (")
    page.wait_for_selector("#preview", state="visible")
    page.screenshot(path=str(SCREENSHOTS / "image_classifier_result.png"), full_page=True)


def test_a_file_that_is_not_an_image_shows_the_reason_and_no_broken_preview(
    page: Page, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    page.set_input_files("#file", str(text))
    error = page.wait_for_selector("#result .error")
    assert error is not None and "Unsupported Media Type" in (error.text_content() or "")
    assert page.locator(".bar").count() == 0 and page.locator(".verdict").count() == 0
    assert not page.is_visible("#preview")  # no broken-image icon where the picture would be
    page.screenshot(path=str(SCREENSHOTS / "image_classifier_error.png"), full_page=True)
