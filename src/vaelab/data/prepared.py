"""The prepare stage's output as the later stages read it: ``images.npy`` and ``index.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vaelab.errors import UserError

if TYPE_CHECKING:
    from vaelab.models.saved import SavedConfig

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"


@dataclass(frozen=True)
class PreparedData:
    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped
    index: pd.DataFrame  # one row per image: image_id, split, attributes...

    def split(self, name: str) -> np.ndarray:
        """The images of one split, in index order (empty when the split does not exist)."""
        return np.ascontiguousarray(self.images[np.flatnonzero(self.index["split"].to_numpy() == name)])

    def has_split(self, name: str) -> bool:
        return bool((self.index["split"] == name).any())


def load_prepared(prepared: Path, columns: list[str] | None = None) -> PreparedData:
    """The images (memory-mapped) and the index (only ``columns`` when given) of ``prepared``."""
    images_path, index_path = prepared / IMAGES_FILE, prepared / INDEX_FILE
    if not images_path.is_file() or not index_path.is_file():
        raise UserError(f"{prepared}: no prepared data; run `dvc repro prepare` first")
    images = np.load(images_path, mmap_mode="r", allow_pickle=False)
    index = pd.read_csv(index_path, usecols=columns)
    if len(index) != len(images):
        raise UserError(f"{prepared}: {len(images)} images but {len(index)} index rows; rerun `dvc repro prepare`")
    return PreparedData(images, index)


def load_split(prepared: Path, split: str) -> np.ndarray:
    """The (N, H, W, C) uint8 images of one split of ``prepared``, which must not be empty."""
    images = load_prepared(prepared, columns=["split"]).split(split)
    if len(images) == 0:
        raise UserError(f"{prepared}: the '{split}' split is empty; see data.split in params.yaml")
    return images


def check_fits(config: SavedConfig, images: np.ndarray, where: str) -> None:
    """The model was trained on images of this size and channel count, or a UserError says to retrain."""
    trained = (config.image_size, config.image_size, config.channels)
    if tuple(images.shape[1:]) != trained:
        raise UserError(
            f"{where}: trained on {trained[0]}x{trained[1]}x{trained[2]} images but the prepared data is "
            f"{'x'.join(map(str, images.shape[1:]))}; retrain it (`dvc repro`)"
        )
