"""Progress bars that show in a terminal or notebook and stay quiet in logs and CI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

__all__ = ["in_notebook", "progress", "progress_enabled"]

T = TypeVar("T")


def in_notebook() -> bool:
    """True inside a running Jupyter kernel, where figures display inline and argv belongs to the kernel.

    Not merely "ipykernel was imported": a library (or a test) may import it in a plain process, where
    a notebook progress bar has no widget to draw and a failed lesson must still exit non-zero.
    """
    ipython = sys.modules.get("IPython")
    if "ipykernel" not in sys.modules or ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_enabled() -> bool:
    """True in a terminal or a notebook; ``DLKIT_PROGRESS=0/1`` forces it off or on."""
    forced = os.environ.get("DLKIT_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "no", "")
    return sys.stderr.isatty() or in_notebook()


def progress(iterable: Iterable[T], desc: str = "", **kwargs: Any) -> Iterable[T]:
    """``tqdm(iterable)`` when progress is enabled, the iterable itself otherwise."""
    if kwargs.pop("disable", False) or not progress_enabled():
        return iterable
    # Not tqdm.auto: outside a notebook it is tqdm_asyncio, which calls iter() on the iterable when
    # the bar is made; for a DataLoader that draws a shuffling seed and changes the run.
    leave = kwargs.pop("leave", False)
    if in_notebook():
        from tqdm.notebook import tqdm as notebook_tqdm

        try:
            return notebook_tqdm(iterable, desc=desc, leave=leave, **kwargs)
        except ImportError:  # no ipywidgets in this kernel: the text bar still works
            pass
    return tqdm(iterable, desc=desc, leave=leave, **kwargs)
