"""Matplotlib figures for the evaluation reports: image grids, latent histograms, charts.

Every function returns a Figure; :func:`save` writes it as PNG and closes it. Images are
``(N, H, W, C)`` float arrays in [0, 1] (see :func:`vaelab.eval.inference.to_numpy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines or GPU nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TILE_INCHES = 0.85


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def image_rows(
    rows: Sequence[np.ndarray],
    *,
    title: str,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> Figure:
    """A grid with one row per array of images (rows may differ in length)."""
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(TILE_INCHES * columns + (1.6 if row_labels else 0.2), TILE_INCHES * len(rows) + 0.7),
        squeeze=False,
    )
    for r, row in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            image = np.clip(row[c], 0.0, 1.0)
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and col_labels and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.05, hspace=0.1)
    return fig


def latent_histograms(codes: np.ndarray, dims: Sequence[int], *, title: str) -> Figure:
    """Histograms of a few latent dimensions and of all dimensions pooled, against N(0, 1).

    ``codes``: ``(N, D)`` encoder means (seed 001's check of how normal the latents look).
    """
    panels = [(f"dimension {d}", codes[:, d]) for d in dims] + [(f"all {codes.shape[1]} dimensions", codes.ravel())]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.8), squeeze=False)
    grid = np.linspace(-4, 4, 200)
    normal = np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi)
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        ax.hist(values, bins=30, density=True, alpha=0.7, label="encoder mean")
        ax.plot(grid, normal, color="black", linewidth=1, label="N(0, 1)")
        ax.set_title(f"{label}\nmean {values.mean():.2f}, sd {values.std():.2f}", fontsize=8)
        ax.set_xlabel("value")
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def kl_per_dim_chart(kl: np.ndarray, threshold_active: np.ndarray, *, title: str) -> Figure:
    """Bar chart of the mean KL of each latent dimension, sorted, active ones highlighted."""
    order = np.argsort(kl)[::-1]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    colours = np.where(threshold_active[order], "tab:blue", "tab:gray")
    ax.bar(np.arange(len(kl)), kl[order], color=colours, width=1.0)
    ax.set_xlabel("latent dimension (sorted by KL; blue = active)")
    ax.set_ylabel("KL (nats)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def line_chart(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    references: dict[str, float] | None = None,
) -> Figure:
    """Lines of ``series`` against ``x``, with optional horizontal reference lines."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, values in series.items():
        ax.plot(x, values, marker="o", label=label)
    for label, value in (references or {}).items():
        ax.axhline(value, linestyle="--", color="gray", linewidth=1)
        ax.annotate(label, (x[0], value), textcoords="offset points", xytext=(2, 3), fontsize=7, color="gray")
    ax.legend(fontsize=7)
    return _label(fig, ax, title, xlabel, ylabel)


def scatter_chart(
    points: dict[str, tuple[float, float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    reference: tuple[str, float] | None = None,
) -> Figure:
    """Labelled points (one per variant), optional horizontal reference line."""
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, (x, y) in points.items():
        ax.scatter([x], [y], s=30)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if reference is not None:
        ax.axhline(reference[1], linestyle="--", color="gray", linewidth=1)
        ax.annotate(reference[0], (ax.get_xlim()[0], reference[1]), textcoords="offset points",
                    xytext=(2, 3), fontsize=7, color="gray")
    return _label(fig, ax, title, xlabel, ylabel)


def _label(fig: Figure, ax: plt.Axes, title: str, xlabel: str, ylabel: str) -> Figure:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
