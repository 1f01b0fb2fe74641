"""CIFAR-10: the official binary archive (study 002's harder data set); no pickles are loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vaelab.config.data_config import DataConfig
from vaelab.data.archive import extract_tar
from vaelab.data.datasets.catalog import Catalog, DownloadReport
from vaelab.data.sources import obtain
from vaelab.errors import UserError

ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
FOLDER = "cifar-10-batches-bin"
BATCHES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
RECORD_BYTES = 1 + 32 * 32 * 3

HOW_TO_SUPPLY = (
    "Ways to supply CIFAR-10 (set data.cifar10.source in params.yaml):\n"
    "  - an http(s):// or file:// URL base holding cifar-10-binary.tar.gz "
    "(the default is the official page)\n"
    "  - a local folder holding cifar-10-binary.tar.gz, or the path of the archive itself"
)


def download(cfg: DataConfig, dest: Path, cache: Path) -> DownloadReport:
    """Fetch the binary archive and extract its batches into ``dest``."""
    archive = obtain(
        ARCHIVE,
        ARCHIVE_MD5,
        source=cfg.cifar10.source,
        cache=cache,
        verify=cfg.cifar10.verify_md5,
        download=cfg.download,
        how_to_supply=HOW_TO_SUPPLY,
    )
    extract_tar(
        archive,
        dest / FOLDER,
        max_bytes=cfg.download.max_extract_bytes,
        select=lambda name: name.startswith(f"{FOLDER}/"),
        strip=f"{FOLDER}/",
    )
    return DownloadReport(source=cfg.cifar10.source)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch → (N, 32, 32, 3) uint8 images and (N,) labels."""
    if not path.is_file():
        raise UserError(f"{path}: missing; run `dvc repro download` first")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size % RECORD_BYTES:
        raise UserError(
            f"{path}: size {data.size} is not a multiple of the {RECORD_BYTES}-byte record"
        )
    records = data.reshape(-1, RECORD_BYTES)
    # Each record: label byte, then the red, green and blue 32x32 planes.
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def catalog(raw: Path, cfg: DataConfig) -> Catalog:
    """The training batches, then the test batch, in file order, with their labels."""
    frames: list[pd.DataFrame] = []
    sources: list[np.ndarray] = []
    for partition, files in BATCHES.items():
        for name in files:
            images, labels = read_batch(raw / FOLDER / name)
            start = sum(len(f) for f in frames if f["partition"].iloc[0] == partition)
            frames.append(
                pd.DataFrame(
                    {
                        "image_id": [f"{partition}_{start + i:05d}" for i in range(len(images))],
                        "label": labels,
                        "partition": partition,
                    }
                )
            )
            sources.extend(images)
    return Catalog(index=pd.concat(frames, ignore_index=True), sources=sources)
