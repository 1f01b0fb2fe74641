"""The figures compare.md opens with: the verdict matrix, the forest plot of the key effects,
and the spectra of the inputs and every variant's reconstructions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vaelab.compare.verdicts import COLLAPSED, HOLDS, INCONCLUSIVE, NOT_HOLDS, Claim

# Cell colours of the verdict matrix, by comparison outcome (colour-blind-safe hues).
COLOURS = {
    HOLDS: "#1b9e77",
    NOT_HOLDS: "#d95f02",
    INCONCLUSIVE: "#bdbdbd",
    COLLAPSED: "#252525",
}
NOT_TESTED = "#ffffff"


def _effect(comparison: Any) -> str:
    """A cell's text: the Laplacian-variance ratio a/b (or the first measure's)."""
    result = comparison.results.get("laplacian_var") or next(iter(comparison.results.values()))
    return f"×{result.ratio:.2g}" if np.isfinite(result.ratio) else f"{result.difference:+.2g}"


def verdict_matrix(claims: Sequence[Claim], variants: Sequence[str]) -> Figure:
    """Claims × variants: each cell a comparison (its first variant's column) coloured by its
    outcome, with its effect as the ratio of the means; blank where the claim has none."""
    measured = [c for c in claims if c.comparisons]
    fig, ax = plt.subplots(figsize=(1.0 + 0.72 * len(variants), 0.9 + 0.55 * len(measured)))
    for row, claim in enumerate(measured):
        cells: dict[str, list[Any]] = {}
        for comparison in claim.comparisons:
            cells.setdefault(comparison.a.variant, []).append(comparison)
        for col, variant in enumerate(variants):
            found = cells.get(variant, [])
            colour = COLOURS[found[0].outcome] if len(found) == 1 else NOT_TESTED
            if len(found) > 1:  # several comparisons start at this variant: the worst shows
                order = [NOT_HOLDS, INCONCLUSIVE, COLLAPSED, HOLDS]
                colour = COLOURS[min((c.outcome for c in found), key=order.index)]
            hatch = "//" if any(c.flags for c in found) else None
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=colour, edgecolor="white",
                                       hatch=hatch, linewidth=1.5))  # fmt: skip
            if found:
                text_colour = "white" if found[0].outcome in (COLLAPSED, NOT_HOLDS) else "black"
                ax.text(col + 0.5, row + 0.5, _effect(found[0]), ha="center", va="center",
                        fontsize=7, color=text_colour)  # fmt: skip
    ax.set_xlim(0, len(variants))
    ax.set_ylim(len(measured), 0)
    ax.set_xticks(np.arange(len(variants)) + 0.5, variants, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        np.arange(len(measured)) + 0.5,
        [f"{c.key} ({c.count(HOLDS)}/{c.counted})" for c in measured],
        fontsize=8,
    )
    ax.tick_params(length=0)
    handles = [Rectangle((0, 0), 1, 1, facecolor=c) for c in COLOURS.values()]
    labels = ["holds", "does not hold", "inconclusive", "collapsed"]
    ax.legend(handles, labels, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.32),
              fontsize=8, frameon=False)  # fmt: skip
    ax.set_title("Each claim's comparisons (k/n hold); cell text: mean ratio a/b of the "
                 "Laplacian variance; hatched: a variant not converged", fontsize=9)  # fmt: skip
    return fig


def forest_plot(claims: Sequence[Claim]) -> Figure:
    """Every comparison's Laplacian-variance ratio a/b with its interval (log axis), grouped by
    claim and coloured by outcome; 1 = no difference."""
    rows = [
        (claim, c) for claim in claims for c in claim.comparisons if "laplacian_var" in c.results
    ]
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.22 * max(len(rows), 1)))
    for y, (_claim, c) in enumerate(rows):
        r = c.results["laplacian_var"]
        low, high = max(r.ratio_low, 1e-3), max(r.ratio_high, 1e-3)
        ax.plot([low, high], [y, y], color=COLOURS[c.outcome], linewidth=2)
        ax.plot([max(r.ratio, 1e-3)], [y], "o", color=COLOURS[c.outcome], markersize=4)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [f"{claim.key}: {c.label}" for claim, c in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("ratio of the means a / b, Laplacian variance (interval at the claim's level)")
    ax.set_title("Key effects: each comparison of each claim", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    return fig


def spectra_figure(curves: dict[str, dict[str, Any]], variants: Sequence[str]) -> Figure:
    """Left: the mean RAPSD of the test images and of each variant's reconstructions (log
    power against f / f_Nyquist, the band the range over seeds). Right: each reconstruction's
    spectrum over the inputs' (the 0.5 line is the half-power level)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    cmap = plt.get_cmap("tab20")
    first = curves[variants[0]]
    freq = np.asarray(first["freq"]["mean"])
    inputs = np.asarray(first["rapsd.input"]["mean"])
    left.plot(freq, inputs, color="black", linewidth=2, label="test images")
    for i, name in enumerate(variants):
        colour = cmap(i % 20)
        for axis, key in ((left, "rapsd.recon"), (right, "ratio.recon")):
            if key not in curves[name]:
                continue
            curve = curves[name][key]
            axis.plot(freq, curve["mean"], color=colour, linewidth=1, label=name)
            axis.fill_between(freq, curve["min"], curve["max"], color=colour, alpha=0.15,
                              linewidth=0)  # fmt: skip
    left.set_yscale("log")
    right.set_yscale("log")
    right.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
    for axis, ylabel in ((left, "mean power"), (right, "reconstruction / input power")):
        axis.set_xlabel("frequency / Nyquist")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3, which="both")
    left.set_title("Radially averaged power spectra (mean, band: range over seeds)", fontsize=9)
    right.set_title("Spectral ratio of the reconstructions (−3 dB at 0.5)", fontsize=9)
    right.legend(fontsize=6, ncol=2, loc="lower left")
    return fig
