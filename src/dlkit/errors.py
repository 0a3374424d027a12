"""Errors a person can act on: one clear message and a non-zero exit, never a traceback to read.

Every expected failure (a dataset that is not on the machine, a file that fails its checksum, a device
that is not there, a corrupt checkpoint, a flag out of range) raises a :class:`UserError` whose message
says what happened and what to do. Commands run through :func:`run_cli`, and lessons install
:func:`install_excepthook`, so that such an error prints as::

    error: dataset 'imdb' (IMDB Large Movie Review Dataset) was not found and ...

and the process exits with status 1 (2 for a bad command line). ``DLKIT_DEBUG=1`` shows the traceback
as well, for the cases where the message is not enough. Any other exception is a bug: it keeps its
traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["DEBUG_ENV", "UserError", "debug_enabled", "format_error", "install_excepthook", "run_cli"]

DEBUG_ENV = "DLKIT_DEBUG"


class UserError(Exception):
    """An expected failure whose message tells the user what to do; exits with ``exit_code``."""

    exit_code: int = 1


def debug_enabled() -> bool:
    """True when ``DLKIT_DEBUG`` asks for tracebacks (any value but empty or 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def format_error(exc: BaseException) -> str:
    """``error: <message>``, with a hint that DLKIT_DEBUG=1 shows where it came from."""
    message = str(exc).strip() or type(exc).__name__
    return f"error: {message}"


def run_cli(main: Callable[[], Any]) -> int:
    """Call ``main()``; a UserError prints its message (no traceback) and becomes the exit status.

    Returns ``main``'s int result (0 for None). Ctrl-C exits with 130 and a short line.
    """
    try:
        result = main()
    except UserError as e:
        if debug_enabled():
            raise
        print(format_error(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


_previous_hook = sys.excepthook


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if isinstance(exc, UserError) and not debug_enabled():
        print(format_error(exc), file=sys.stderr)
        return
    _previous_hook(kind, exc, tb)


def install_excepthook() -> None:
    """Print uncaught UserErrors of a script as one line (the exit status stays 1)."""
    sys.excepthook = _excepthook
