"""A uvicorn server in a thread, on a port of 127.0.0.1 that the OS chose, for the browser and API tests.

    with running_server(build_app(release)) as url:     # "http://127.0.0.1:PORT/"
        httpx.get(url + "health")

The socket is bound before the server starts (no race for a "free" port); leaving the block stops it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


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
