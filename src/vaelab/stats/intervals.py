"""A metric measured over training seeds and test images, with its spread and a 95 % interval.

Each metric comes as an ``(S, N)`` array: ``S`` seeds (replicate trainings of one
variant) by ``N`` test images (the same images for every seed). Its interval is a
two-level (hierarchical) percentile bootstrap: each resample draws ``S`` seeds and ``N``
images with replacement and averages, so both the training noise and the choice of test
images widen it. scipy.stats.bootstrap resamples one level only, hence the few lines here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
# Resamples per vectorised chunk: bounds the (S, chunk, N) gather at CelebA's 20k test images.
_CHUNK = 100


@dataclass(frozen=True)
class Estimate:
    """A metric's mean over seeds of the per-seed mean over images, and how sure it is."""

    mean: float
    sd: float  # standard deviation over seeds of the per-seed means (0 with one seed)
    low: float  # the 95 % bootstrap interval over seeds and test images
    high: float
    seeds: int
    images: int

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (for JSON)."""
        return asdict(self)

    def shown(self, digits: int = 4) -> str:
        """``0.0123 [0.0110, 0.0135]``: the mean and its interval, for reports."""
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def estimate(
    values: np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES, level: float = LEVEL
) -> Estimate:
    """``values`` (S, N) — or (N,) for one seed — → its :class:`Estimate`.

    The bootstrap draws come from ``numpy.random.default_rng(seed)``, so a rerun gives the
    same interval. A constant array gives a point interval.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a non-empty (seeds, images) array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite to be averaged")
    seeds, images = values.shape
    per_seed = values.mean(axis=1)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        picked_images = rng.integers(0, images, size=(count, images))
        picked_seeds = rng.integers(0, seeds, size=(count, seeds))
        # (S, count): every seed's mean over the resampled images, then the resampled seeds.
        seed_means = values[:, picked_images].mean(axis=2)
        means[start : start + count] = np.take_along_axis(seed_means.T, picked_seeds, axis=1).mean(
            axis=1
        )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Estimate(
        mean=float(per_seed.mean()),
        sd=float(per_seed.std(ddof=1)) if seeds > 1 else 0.0,
        low=float(min(low, per_seed.mean())),
        high=float(max(high, per_seed.mean())),
        seeds=seeds,
        images=images,
    )
