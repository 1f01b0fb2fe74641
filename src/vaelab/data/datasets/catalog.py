"""What every data set module provides: a download into the official layout, and a catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from vaelab.config.data_config import DataConfig

# An image to prepare: a file to decode, or pixels already in memory.
ImageSource = str | np.ndarray


@dataclass
class Catalog:
    """Every image of a raw data set, in a fixed order.

    ``index`` has one row per image: ``image_id`` first, then whatever the data set
    knows (attributes as 0/1, ``identity``, ``face``, ``label``) and, where the data set
    has an official partition, ``partition`` in {train, val, test}.
    """

    index: pd.DataFrame
    sources: Sequence[ImageSource]
    # (N, 10) aligned landmarks for crop.method: landmarks, else None.
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.index) != len(self.sources):
            raise ValueError(f"catalog has {len(self.index)} rows but {len(self.sources)} sources")


@dataclass
class DownloadReport:
    """What a download did, for MANIFEST.json."""

    source: str
    # Optional files that the source does not have, with the reason.
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class DatasetModule(Protocol):
    """A module of :mod:`vaelab.data.datasets`: one data set's download and catalog."""

    def download(self, cfg: DataConfig, dest: Path, cache: Path) -> DownloadReport:
        """Write the data set in its official layout into the empty folder ``dest``."""

    def catalog(self, raw: Path, cfg: DataConfig) -> Catalog:
        """List the images under ``raw`` (written by :func:`download`)."""
