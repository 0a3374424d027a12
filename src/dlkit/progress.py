"""Progress bars that show in a terminal or notebook and stay quiet in logs and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

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
    if kwargs.pop("disable", False) or not progress_enabled():
        return iterable
    # Not tqdm.auto: outside a notebook it is tqdm_asyncio, which calls iter() on the iterable when
    # the bar is made; for a DataLoader that draws a shuffling seed and changes the run.
    if "ipykernel" in sys.modules:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, desc=desc, leave=kwargs.pop("leave", False), **kwargs)
    return tqdm(iterable, desc=desc, leave=kwargs.pop("leave", False), **kwargs)
