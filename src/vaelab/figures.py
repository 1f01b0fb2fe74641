"""Matplotlib figures for the evaluation reports: image grids, latent histograms, charts.

Every function returns a Figure; :func:`save` writes it as PNG and closes it. Images are
``(N, H, W, C)`` float arrays in [0, 1] (see :func:`vaelab.models.inference.to_numpy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines or GPU nodes

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

TILE_INCHES = 0.85
PNG_COMPRESS_LEVEL = 1
TILE_GAP = 2  # pixels between the tiles of an image grid
# Every image grid is drawn on this scale (no per-image stretching), and says so.
PIXEL_SCALE = "pixels on a fixed scale: 0 = black, 1 = white (no per-image contrast stretch)"
# Histograms of latent values share these bins, so a collapsed dimension (all values near
# 0) shows as one tall bar against the N(0, 1) curve instead of filling the panel.
HISTOGRAM_BINS = np.linspace(-4.0, 4.0, 41)


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG (cropped to what it draws) and close it.

    zlib's fastest level: PNG stays lossless, the files grow by a sixth, and the encoding
    (a third of an image grid's saving at level 6) takes 60 % of level 6's time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(
        path, dpi=100, bbox_inches="tight", pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL}
    )
    plt.close(fig)
    return path


def image_rows(
    rows: Sequence[np.ndarray],
    *,
    title: str,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> Figure:
    """A grid with one row per array of images (rows may differ in length).

    The tiles are pasted into one RGBA canvas drawn on one axes (one axes per thumbnail
    made a figure of a few hundred images cost seconds); grey images become equal RGB
    channels, so every tile keeps the fixed 0–1 scale. Labels are text beside the canvas.
    """
    canvas, (height, width) = tile_canvas(rows)
    step_y, step_x = height + TILE_GAP, width + TILE_GAP
    columns = max(len(row) for row in rows)
    fig, ax = plt.subplots(
        figsize=(
            TILE_INCHES * columns + (1.6 if row_labels else 0.2),
            TILE_INCHES * len(rows) + 0.7,
        )
    )
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for r, label in enumerate(row_labels or []):
        ax.text(-TILE_GAP, r * step_y + height / 2, label, ha="right", va="center", fontsize=8)
    for c, label in enumerate(col_labels or []):
        ax.text(c * step_x + width / 2, -TILE_GAP, label, ha="center", va="bottom", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.0, PIXEL_SCALE, ha="center", va="top", fontsize=7, color="gray")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.05)
    return fig


def tile_canvas(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[int, int]]:
    """The tiles of :func:`image_rows` as one ``uint8`` RGBA array, and the tile size.

    Row ``r``, column ``c`` of the grid is at ``[r * (H + TILE_GAP) :][: H]`` and
    ``[c * (W + TILE_GAP) :][: W]``, opaque; the gaps and the ends of short rows are
    transparent. Pixels are ``int(255 * clip(value, 0, 1))``, the bytes matplotlib makes of
    a float image, so the figure's pixels are those a float canvas gave, without matplotlib
    converting a float canvas at every draw.
    """
    height, width = next(np.asarray(row) for row in rows if len(row)).shape[1:3]
    columns = max(len(row) for row in rows)
    step_y, step_x = height + TILE_GAP, width + TILE_GAP
    canvas = np.zeros(
        (len(rows) * step_y - TILE_GAP, columns * step_x - TILE_GAP, 4), dtype=np.uint8
    )
    for r, row in enumerate(rows):
        if not len(row):
            continue
        tiles = (np.clip(np.asarray(row, dtype=np.float64), 0.0, 1.0) * 255).astype(
            np.uint8
        )  # (n, H, W, 1 or 3)
        # The row as one strip (H, n * step_x): each tile, then its gap.
        strip = np.zeros((height, len(tiles), step_x, 4), dtype=np.uint8)
        strip[:, :, :width, :3] = tiles.transpose(
            1, 0, 2, 3
        )  # a grey tile's one channel fills all three
        strip[:, :, :width, 3] = 255
        strip = strip.reshape(height, -1, 4)[:, : canvas.shape[1]]
        canvas[r * step_y : r * step_y + height, : strip.shape[1]] = strip
    return canvas, (height, width)


def latent_histograms(codes: np.ndarray, dims: Sequence[int], *, title: str) -> Figure:
    """Histograms of a few latent dimensions and of all dimensions pooled, against N(0, 1).

    ``codes``: ``(N, D)`` encoder means (study 001's check of how normal the latents look).
    Fixed bins on [-4, 4] (values beyond are counted in the outer bins) and a density
    axis, so a dimension the encoder does not use is a spike at 0. Each histogram is one
    filled outline (``stairs``), not a patch per bar: the same bars, drawn in a tenth of the time.
    """
    panels = [(f"dimension {d}", codes[:, d]) for d in dims] + [
        (f"all {codes.shape[1]} dimensions", codes.ravel())
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.8), squeeze=False)
    normal = np.exp(-(HISTOGRAM_BINS**2) / 2) / np.sqrt(2 * np.pi)
    for ax, (label, values) in zip(axes[0], panels, strict=True):
        clipped = np.clip(values, HISTOGRAM_BINS[0], HISTOGRAM_BINS[-1])
        density, _edges = np.histogram(clipped, bins=HISTOGRAM_BINS, density=True)
        ax.stairs(density, HISTOGRAM_BINS, fill=True, alpha=0.7, label=f"codes (n = {len(values)})")
        ax.plot(HISTOGRAM_BINS, normal, color="black", linewidth=1, label="N(0, 1)")
        ax.set_xlim(HISTOGRAM_BINS[0], HISTOGRAM_BINS[-1])
        ax.set_title(f"{label}\nmean {values.mean():.2f}, sd {values.std():.3f}", fontsize=8)
        ax.set_xlabel("value")
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def kl_per_dim_chart(kl: np.ndarray, active: np.ndarray, *, threshold: float, title: str) -> Figure:
    """Bar chart of the mean KL of each latent dimension, sorted, active ones in blue.

    The bars (width 1, centred on 0, 1, ...) are two filled outlines, the active and the
    inactive dimensions' (``stairs``), not a patch per dimension (a z of 256 took seconds).
    """
    from matplotlib.patches import Patch

    order = np.argsort(kl)[::-1]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    edges = np.arange(len(kl) + 1) - 0.5
    for selected, colour in ((active[order], "tab:blue"), (~active[order], "tab:gray")):
        ax.stairs(np.where(selected, kl[order], 0.0), edges, fill=True, color=colour)
    ax.legend(
        handles=[
            Patch(color="tab:blue", label=f"active: Var[μ] > {threshold:g} ({int(active.sum())})"),
            Patch(color="tab:gray", label=f"inactive ({int((~active).sum())})"),
        ],
        fontsize=7,
    )
    ax.set_xlabel("latent dimension, sorted by KL")
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
        ax.annotate(
            label,
            (x[0], value),
            textcoords="offset points",
            xytext=(2, 3),
            fontsize=7,
            color="gray",
        )
    ax.legend(fontsize=7)
    return _label(fig, ax, title, xlabel, ylabel)


def line_panels(
    x: Sequence[float],
    panels: Sequence[tuple[str, dict[str, Sequence[float]], dict[str, float]]],
    *,
    title: str,
    xlabel: str,
) -> Figure:
    """Side-by-side line charts over the same ``x``: one per ``(ylabel, series, references)``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.3), squeeze=False)
    for ax, (ylabel, series, references) in zip(axes[0], panels, strict=True):
        for label, values in series.items():
            ax.plot(x, values, marker="o", label=label)
        for label, value in references.items():
            ax.axhline(value, linestyle="--", color="gray", linewidth=1)
            ax.annotate(
                label,
                (x[0], value),
                textcoords="offset points",
                xytext=(2, 3),
                fontsize=7,
                color="gray",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def scatter_chart(
    points: dict[str, tuple[float, float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    errors: dict[str, tuple[float, float]] | None = None,
    reference: tuple[str, float] | None = None,
) -> Figure:
    """Labelled points (one per variant) with optional (x, y) error bars and a horizontal
    reference line."""
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, (x, y) in points.items():
        xerr, yerr = (errors or {}).get(label, (0.0, 0.0))
        ax.errorbar([x], [y], xerr=[xerr], yerr=[yerr], fmt="o", markersize=5, capsize=2)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if reference is not None:
        ax.axhline(reference[1], linestyle="--", color="gray", linewidth=1)
        ax.annotate(
            reference[0],
            (ax.get_xlim()[0], reference[1]),
            textcoords="offset points",
            xytext=(2, 3),
            fontsize=7,
            color="gray",
        )
    return _label(fig, ax, title, xlabel, ylabel)


def knob_chart(
    values: Sequence[str],
    panels: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
) -> Figure:
    """One panel per ``(ylabel, means, sds)``: a metric against the knob's ``values`` (as
    categories, in order), with error bars."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    positions = np.arange(len(values))
    for ax, (ylabel, means, sds) in zip(axes[0], panels, strict=True):
        ax.errorbar(positions, means, yerr=sds, fmt="o-", capsize=3)
        ax.set_xticks(positions, values)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _label(fig: Figure, ax: Axes, title: str, xlabel: str, ylabel: str) -> Figure:
    """Label ``ax``'s axes, title it, lay ``fig`` out tight and return it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
