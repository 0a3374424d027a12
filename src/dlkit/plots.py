"""Figures a learner would rather look at than read: curves, histories, image grids.

Each function returns a matplotlib ``Figure``; save it with ``lesson.savefig(fig, name)`` or
:func:`save_figure`. Matplotlib is imported lazily and uses the Agg backend when there is no display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["image_grid", "plot_curves", "plot_history", "save_figure"]


def _plt() -> Any:
    import matplotlib

    if not os.environ.get("DISPLAY") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "loss",
    logy: bool = False,
    ax: Any = None,
) -> Figure:
    """One line per named curve, e.g. ``{"SGD": losses_sgd, "Adam": losses_adam}``."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), list(values), label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_history(rows: Sequence[Mapping[str, float]], *, title: str = "") -> Figure:
    """Loss and accuracy per epoch from ``fit``'s history rows (keys like train_loss, val_acc)."""
    plt = _plt()
    keys = [k for k in rows[0] if k.endswith(("_loss", "_acc"))] if rows else []
    groups = [g for g in ("loss", "acc") if any(k.endswith("_" + g) for k in keys)]
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.5), squeeze=False)
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    for ax, group in zip(axes[0], groups, strict=False):
        for key in keys:
            if key.endswith("_" + group):
                ax.plot(epochs, [r[key] for r in rows], marker="o", label=key)
        ax.set(xlabel="epoch", ylabel=group, title=title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(
    images: torch.Tensor, labels: Sequence[str] | None = None, *, ncols: int = 8, cmap: str = "gray"
) -> Figure:
    """A grid of images (N, C, H, W) or (N, H, W) in [0, 1], each with an optional caption."""
    plt = _plt()
    images = images.detach().float().cpu()
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    n = images.shape[0]
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1) if img.dim() == 3 else img, cmap=cmap)
        if labels is not None:
            ax.set_title(labels[i], fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as a PNG (creating folders) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path
