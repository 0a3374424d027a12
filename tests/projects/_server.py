"""A uvicorn server in a thread, on a port of 127.0.0.1 that the OS chose, and a headless Chromium page,
for the browser and API tests.

    require_browser()                                  # at import: skip the module without Chromium
    with running_server(build_app(release)) as url:     # "http://127.0.0.1:PORT/"
        httpx.get(url + "health")
        with browser_page(url) as page: ...             # Playwright driving Debian's /usr/bin/chromium

The socket is bound before the server starts (no race for a "free" port); leaving the block stops it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # `playwright install` cannot download a browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def require_browser() -> None:
    """Skip the calling test module, with the reason, when Chromium, Playwright or uvicorn is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package", allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pytest.importorskip("uvicorn")


@contextmanager
def browser_page(url: str, timeout_ms: int = 30_000) -> Iterator[Any]:
    """A Playwright page in headless Chromium, opened at ``url``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            yield page
        finally:
            browser.close()


@contextmanager
def running_server(app: Any, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` (an ASGI app) until the block ends; yields its base URL, ending with "/"."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail(f"the server did not start within {start_timeout:g} s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
