"""Progress bars that show in a terminal or notebook and stay quiet in logs and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "progress_enabled"]

T = TypeVar("T")


def progress_enabled() -> bool:
    """True in a terminal or a notebook; ``DLKIT_PROGRESS=0/1`` forces it off or on."""
    forced = os.environ.get("DLKIT_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "no", "")
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def progress(iterable: Iterable[T], desc: str = "", **kwargs: Any) -> Iterable[T]:
    """``tqdm(iterable)`` when progress is enabled, the iterable itself otherwise."""
    disable = kwargs.pop("disable", False) or not progress_enabled()
    return tqdm(iterable, desc=desc, disable=disable, leave=kwargs.pop("leave", False), **kwargs)
