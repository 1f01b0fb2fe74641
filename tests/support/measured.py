"""Hand-made per-image measurements for compare's tests: ``(seeds, images)`` arrays by
(variant, set, measure), turned into the table evaluate writes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaelab.compare.comparisons import Measurements, Status
from vaelab.io.per_image_table import COLUMNS, is_test_image_set


def faces(images: int = 30, seeds: int = 3, *, seed: int = 0, low: float = 1.0) -> np.ndarray:
    """(seeds, images): a wide spread between images every seed shares, little between seeds."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, low + 1.0, size=images)[None, :] + rng.normal(
        0.0, 0.001, size=(seeds, images)
    )


def table(values: dict[tuple[str, str, str], np.ndarray]) -> pd.DataFrame:
    """The long table of ``values``; test-image sets get ids ``img_000``, ... by position."""
    frames = [pd.DataFrame({column: [] for column in COLUMNS})]
    for (variant, source, measure), array in values.items():
        array = np.atleast_2d(np.asarray(array, dtype=np.float64))
        seeds, items = array.shape
        ids = (
            [f"img_{i:03d}" for i in range(items)] if is_test_image_set(source) else [None] * items
        )
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "seed": np.repeat(np.arange(seeds), items),
                    "set": source,
                    "measure": measure,
                    "item": np.tile(np.arange(items), seeds),
                    "image_id": ids * seeds,
                    "value": array.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).astype({"seed": np.int64, "item": np.int64})


def measured(
    values: dict[tuple[str, str, str], np.ndarray], status: dict[str, Status] | None = None
) -> Measurements:
    return Measurements(table(values), status or {})
