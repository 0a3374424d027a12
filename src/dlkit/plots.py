"""Figures a learner would rather look at than read: curves, histories, image grids, confusion
matrices, reliability diagrams.

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

__all__ = [
    "image_grid", "plot_bars", "plot_confusion_matrix", "plot_curves", "plot_detections", "plot_history",
    "plot_reliability", "plot_word_pairs", "save_figure",
]  # fmt: skip


def _plt() -> Any:
    import matplotlib

    from dlkit.progress import in_notebook

    if not os.environ.get("DISPLAY") and not in_notebook():
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
    steps: Sequence[float] | None = None,
) -> Figure:
    """One line per named curve, e.g. ``{"SGD": losses_sgd, "Adam": losses_adam}``, over 1, 2, ... or
    over ``steps`` (the x of each value, the same for every curve)."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(list(steps) if steps is not None else range(1, len(values) + 1), list(values), label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_bars(values: Mapping[str, float], *, title: str = "", ylabel: str = "") -> Figure:
    """One bar per named number, e.g. a model's metrics ``{"hr": 0.63, "ndcg": 0.19}``, each labelled."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(values) + 1.5), 3.5))
    bars = ax.bar(list(values), list(values.values()))
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    if max(map(len, values), default=0) > 8:  # long names would run into each other: slant them
        ax.tick_params(axis="x", labelrotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
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


def plot_confusion_matrix(
    cm: torch.Tensor | Sequence[Sequence[float]],
    classes: Sequence[str],
    *,
    normalize: bool = True,
    title: str = "",
) -> Figure:
    """A confusion matrix as a heat map: rows are true classes, columns predicted ones.

    ``cm`` is a (C, C) count matrix such as ``dlkit.metrics.confusion_matrix`` returns. With
    ``normalize=True`` each row is divided by its total, so a cell reads "of the true class i, this
    fraction was predicted as j" and the diagonal is each class's recall; otherwise cells show counts.
    """
    plt = _plt()
    counts = torch.as_tensor(cm).detach().cpu().double()
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(classes):
        raise ValueError(f"need a (C, C) matrix for {len(classes)} classes, got {tuple(counts.shape)}")
    values = counts / counts.sum(dim=1, keepdim=True).clamp(min=1) if normalize else counts
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.62 * n, 0.9 + 0.55 * n))
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = values.max().item() / 2  # dark cells get white text
    for i in range(n):
        for j in range(n):
            value = values[i, j].item()
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    return fig


def plot_reliability(calib: Mapping[str, Any], *, title: str = "", unit: str = "examples") -> Figure:
    """The reliability diagram of :func:`dlkit.metrics.calibration_bins`' result: accuracy per
    confidence bin against the diagonal (a calibrated model's bars touch it), the bins' counts below."""
    plt = _plt()
    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = calib["edges"]
    centers = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    width = edges[1] - edges[0]
    used = [i for i, n in enumerate(calib["count"]) if n > 0]
    ax.bar(
        [centers[i] for i in used], [calib["accuracy"][i] for i in used], width=width * 0.9, label="accuracy"
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(
        [centers[i] for i in used],
        [calib["confidence"][i] for i in used],
        "_",
        color="C1",
        ms=14,
        mew=2,
        label="mean confidence (the gap to the bar is the miscalibration)",
    )
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"{title} (ECE {calib['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    ax_count.bar(centers, calib["count"], width=width * 0.9, color="C7")
    ax_count.set(xlabel="confidence (probability of the predicted class)", ylabel=unit)
    fig.tight_layout()
    return fig


def plot_detections(
    images: torch.Tensor,
    targets: Sequence[Mapping[str, torch.Tensor]],
    detections: Mapping[str, Sequence[Mapping[str, torch.Tensor]]],
    classes: Sequence[str],
    *,
    min_score: float = 0.5,
    num_images: int = 4,
) -> Figure:
    """The first ``num_images`` grey images (N, 1, H, W), one row per detector in ``detections``
    ({"YOLO-style": preds, ...}, each a list of {"boxes", "scores", "labels"}): the true boxes dashed
    green, the detections scoring above ``min_score`` solid orange with their class and score, and a
    legend that says which is which."""
    plt = _plt()
    from matplotlib.lines import Line2D

    rows = len(detections)
    fig, axes = plt.subplots(rows, num_images, figsize=(3 * num_images, 3.2 * rows), squeeze=False)
    for row, (title, preds) in enumerate(detections.items()):
        for col, ax in enumerate(axes[row]):
            ax.imshow(images[col, 0].detach().cpu(), cmap="gray")
            ax.set(title=title, xticks=[], yticks=[])
            for x1, y1, x2, y2 in targets[col]["boxes"].tolist():
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", ls="--"))
            p = preds[col]
            for box, score, label in zip(
                p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True
            ):
                if score <= min_score:
                    continue
                x1, y1, x2, y2 = box
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="orange"))
                ax.text(x1, y1 - 1, f"{classes[label]} {score:.2f}", color="orange", fontsize=7)
    handles = [
        Line2D([], [], color="lime", ls="--", label="true box"),
        Line2D([], [], color="orange", label=f"detection (class, score > {min_score:g})"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_word_pairs(vectors: Mapping[str, torch.Tensor], groups: Mapping[str, Sequence[str]]) -> Figure:
    """One panel per group of word pairs ``(a1, b1, a2, b2, ...)``: the words' vectors projected on their
    top two principal axes, an arrow from each a to its b (parallel arrows: a shared offset such as
    man -> woman, king -> queen). ``vectors`` maps each word to its (D,) vector."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.5), squeeze=False)
    for ax, (group, words) in zip(axes[0], groups.items(), strict=True):
        X = torch.stack([vectors[w].float() for w in words])  # (n, D)
        X = X - X.mean(0)
        xy = X @ torch.linalg.svd(X, full_matrices=False).Vh[:2].T  # (n, 2)
        for (x0, y0), (x1, y1) in zip(xy[0::2].tolist(), xy[1::2].tolist(), strict=True):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.6"})
        ax.scatter(xy[:, 0], xy[:, 1], c=["tab:blue", "tab:red"] * (len(words) // 2))
        for word, (x, y) in zip(words, xy.tolist(), strict=True):
            ax.annotate(word, (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set(title=f"{group}: PCA of the vectors", xticks=[], yticks=[])
    fig.tight_layout()
    return fig
