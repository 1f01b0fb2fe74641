"""MNIST: the four official IDX archives (study 002's data set)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from vaelab.config.data_config import DataConfig
from vaelab.data.datasets.catalog import Catalog, DownloadReport
from vaelab.data.sources import obtain
from vaelab.errors import UserError

# name -> md5 (torchvision's datasets/mnist.py)
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
PARTS = {"train": "train", "test": "t10k"}

HOW_TO_SUPPLY = (
    "Ways to supply MNIST (set data.mnist.source in params.yaml):\n"
    "  - an http(s):// or file:// URL base holding the four *-ubyte.gz files "
    "(the default is a mirror)\n"
    "  - a local folder holding the four *-ubyte.gz files"
)


def download(cfg: DataConfig, dest: Path, cache: Path) -> DownloadReport:
    """Fetch the four idx files into ``dest``, each checked against its md5."""
    for name, md5 in FILES.items():
        path = obtain(
            name,
            md5,
            source=cfg.mnist.source,
            cache=cache,
            verify=cfg.mnist.verify_md5,
            download=cfg.download,
            how_to_supply=HOW_TO_SUPPLY,
        )
        shutil.copyfile(path, dest / name)
    return DownloadReport(source=cfg.mnist.source)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (unsigned-byte data) into an array of its declared shape."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path}: header says shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def catalog(raw: Path, cfg: DataConfig) -> Catalog:
    """The training images, then the test images, with their labels."""
    frames: list[pd.DataFrame] = []
    sources: list[np.ndarray] = []
    for partition, prefix in PARTS.items():
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise UserError(f"{raw}: {prefix} has {len(images)} images but {len(labels)} labels")
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [f"{partition}_{i:05d}" for i in range(len(images))],
                    "label": labels.astype(np.int64),
                    "partition": partition,
                }
            )
        )
        sources.extend(images)
    return Catalog(index=pd.concat(frames, ignore_index=True), sources=sources)
