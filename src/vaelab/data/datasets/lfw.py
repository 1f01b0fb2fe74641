"""scikit-image's bundled LFW subset: the offline default.

``skimage.data.lfw_subset()`` holds 200 greyscale 25x25 images in [0, 1]: the first
100 are faces, the last 100 are not. The non-faces are kept as the out-of-distribution
set (``face`` = 0, split ``ood``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vaelab.config.data_config import DataConfig
from vaelab.data.datasets.catalog import Catalog, DownloadReport
from vaelab.errors import UserError

FILE_NAME = "lfw_subset.npy"
N_FACES = 100


def download(cfg: DataConfig, dest: Path, cache: Path) -> DownloadReport:
    """Save scikit-image's bundled subset as one array in ``dest``."""
    from skimage import data as skdata

    images = skdata.lfw_subset()  # type: ignore[no-untyped-call]  # scikit-image: no annotations
    np.save(dest / FILE_NAME, images, allow_pickle=False)
    return DownloadReport(source="skimage.data.lfw_subset (bundled with scikit-image)")


def catalog(raw: Path, cfg: DataConfig) -> Catalog:
    """The 100 faces, then (unless ``data.lfw.nonfaces`` is false) the 100 non-faces."""
    path = raw / FILE_NAME
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro download` first")
    images = np.load(path, allow_pickle=False)
    if images.ndim != 3:
        raise UserError(
            f"{path}: expected an (N, H, W) array of grey images, got shape {images.shape}"
        )
    count = len(images)
    is_face = np.arange(count) < N_FACES
    index = pd.DataFrame(
        {
            "image_id": [
                f"{'face' if face else 'nonface'}_{i:03d}" for i, face in enumerate(is_face)
            ],
            "face": is_face.astype(np.int8),
        }
    )
    if not cfg.lfw.nonfaces:
        index, images = index.iloc[:N_FACES], images[:N_FACES]
    return Catalog(index=index, sources=list(images))
