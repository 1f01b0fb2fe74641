"""Paired comparisons: the difference of two variants measured on the same test images.

Two variants evaluated on the same ``N`` test images share most of each one's spread: an
image that is hard for one is hard for the other. Comparing their two marginal intervals
(:mod:`vaelab.stats.intervals`) counts that shared spread twice; the **paired** bootstrap
here resamples the test images *jointly* (the same draw of images for both sides) and the
seeds *within* each variant, and takes the interval of the difference of the two means.

Each side is an ``(S, N)`` array: ``S`` seeds by the same ``N`` images, in the same order
(callers join on the images' ids). The means are the mean over seeds of the per-seed mean
over images, as in :class:`~vaelab.stats.intervals.Estimate`. A family of ``k`` comparisons
controls its family-wise error by Bonferroni: each interval at level ``1 - alpha / k``
(:func:`family_level`), so that a decision and the interval shown are the same thing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

ALPHA = 0.05
RESAMPLES = 10_000
# Resamples per vectorised chunk: bounds the (chunk, N) weights at CelebA's 20k test images.
_CHUNK = 250

Direction = Literal["higher", "lower", "undecided"]


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` and ``a / b`` of two variants' means on the same images, with intervals."""

    mean_a: float
    mean_b: float
    difference: float  # mean_a - mean_b
    low: float  # the interval of the difference at ``level``
    high: float
    ratio: float  # mean_a / mean_b (nan when mean_b is 0)
    ratio_low: float
    ratio_high: float
    level: float
    seeds_a: int
    seeds_b: int
    images: int

    @property
    def direction(self) -> Direction:
        """``higher`` when the whole interval is above 0, ``lower`` below, else ``undecided``."""
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return "undecided"

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "direction": self.direction}

    def shown(self, digits: int = 3) -> str:
        """``+0.000683 [+0.00028, +0.00113] (×1.25 [1.1, 1.4])``, for reports."""
        return (
            f"{self.difference:+.{digits}g} [{self.low:+.{digits}g}, {self.high:+.{digits}g}] "
            f"(×{self.ratio:.{digits}g} "
            f"[{self.ratio_low:.{digits}g}, {self.ratio_high:.{digits}g}])"
        )


def family_level(comparisons: int, alpha: float = ALPHA) -> float:
    """The interval level that keeps a family of ``comparisons`` at family-wise error ``alpha``
    (Bonferroni): 0.95 for one comparison, 1 - 0.05 / k for k."""
    if comparisons < 1:
        raise ValueError(f"a family needs at least one comparison, got {comparisons}")
    return 1.0 - alpha / comparisons


def _as_seeds_by_images(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"{name}: expected a non-empty (seeds, images) array, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: values must be finite to be compared")
    return values


def _counts(rng: np.random.Generator, rows: int, size: int) -> np.ndarray:
    """(rows, size) float64: how often each of ``size`` items is drawn in each resample of
    ``size`` draws with replacement."""
    picked = rng.integers(0, size, size=(rows, size))
    offsets = (np.arange(rows) * size)[:, None]
    return (
        np.bincount((picked + offsets).ravel(), minlength=rows * size)
        .reshape(rows, size)
        .astype(np.float64)
    )


def _resampled_means(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int, *, joint: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Each side's mean in each resample: seeds drawn within each side; items (images) drawn
    jointly for both sides when ``joint``, else independently (unpaired samples)."""
    means_a, means_b = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        shared = _counts(rng, count, a.shape[1]) if joint else None
        for side, out in ((a, means_a), (b, means_b)):
            seeds, items = side.shape
            weights = shared if shared is not None else _counts(rng, count, items)
            # mean over drawn seeds and items = (seed counts @ values) · item counts / (S N)
            per_item = _counts(rng, count, seeds) @ side  # (count, N)
            out[start : start + count] = np.einsum("rn,rn->r", per_item, weights) / (seeds * items)
    return means_a, means_b


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = 1.0 - ALPHA,
    joint: bool = True,
) -> PairedDifference:
    """The difference ``a - b`` of two ``(S, N)`` arrays on the same ``N`` images, with its
    percentile-bootstrap interval at ``level`` (and the ratio's). Seeded: a rerun gives the
    same bytes. With ``joint=False`` the two sides are independent samples (decoded prior
    draws, say), resampled each on its own, and may differ in size."""
    a, b = _as_seeds_by_images(a, "a"), _as_seeds_by_images(b, "b")
    if joint and a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be measured on the same images: {a.shape[1]} != {b.shape[1]}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    mean_a, mean_b = float(a.mean(axis=1).mean()), float(b.mean(axis=1).mean())
    boot_a, boot_b = _resampled_means(a, b, np.random.default_rng(seed), resamples, joint=joint)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boot_a - boot_b, [tail, 1.0 - tail])
    difference = mean_a - mean_b
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_low, ratio_high = np.quantile(boot_a / boot_b, [tail, 1.0 - tail])
    ratio = mean_a / mean_b if mean_b != 0 else math.nan
    return PairedDifference(
        mean_a=mean_a,
        mean_b=mean_b,
        difference=difference,
        low=float(min(low, difference)),
        high=float(max(high, difference)),
        ratio=ratio,
        ratio_low=float(min(ratio_low, ratio)) if math.isfinite(ratio) else math.nan,
        ratio_high=float(max(ratio_high, ratio)) if math.isfinite(ratio) else math.nan,
        level=level,
        seeds_a=a.shape[0],
        seeds_b=b.shape[0],
        images=a.shape[1],
    )
