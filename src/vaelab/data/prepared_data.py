"""The prepare stage's output folder, ``data/prepared/``: the one module that knows its files.

- ``images.npy``: every kept image, (N, H, W, C) uint8;
- ``index.csv``: one row per image (image_id, split, attributes...);
- ``fingerprint.json``: the md5 of the two files' bytes (images, then index), hashed once as
  prepare writes them, and their sizes. A training's checkpoint is keyed by it, so that a
  checkpoint made on other data is not resumed; every train stage reads it instead of hashing
  a CelebA-sized ``images.npy`` (2.5 GB) once more.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from vaelab.errors import UserError

if TYPE_CHECKING:
    # pandas is imported where an index is read: a train stage with nothing to do reads the
    # fingerprint alone and is done without it (vaelab.train.finished).
    import pandas as pd

IMAGES_FILE = "images.npy"
INDEX_FILE = "index.csv"
FINGERPRINT_FILE = "fingerprint.json"


class _HashingWriter:
    """A binary file that feeds every byte written through it to an md5 as well."""

    def __init__(self, handle: BinaryIO, digest: hashlib._Hash) -> None:
        self.handle, self.digest = handle, digest

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def write_prepared(folder: Path, pixels: np.ndarray, index: pd.DataFrame) -> str:
    """Write ``pixels`` (N, H, W, C) uint8, ``index`` and their fingerprint into ``folder`` (a
    staging folder: see io.atomic); returns the fingerprint, the md5 of the two files' bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(folder / IMAGES_FILE, "wb") as handle:
        np.save(_HashingWriter(handle, digest), pixels, allow_pickle=False)
    index_bytes = index.to_csv(index=False, lineterminator="\n").encode()
    (folder / INDEX_FILE).write_bytes(index_bytes)
    digest.update(index_bytes)
    fingerprint = digest.hexdigest()
    sizes = {name: (folder / name).stat().st_size for name in (IMAGES_FILE, INDEX_FILE)}
    (folder / FINGERPRINT_FILE).write_text(
        json.dumps({"md5": fingerprint, "bytes": sizes}, indent=2) + "\n"
    )
    return fingerprint


def read_fingerprint(prepared: Path) -> str:
    """The md5 prepare recorded for ``prepared``'s images and index, after checking that the files
    still have the sizes it wrote (a file changed since is a UserError: rerun prepare)."""
    path = prepared / FINGERPRINT_FILE
    rerun = (
        "rerun `dvc repro prepare` (or `dvc repro --force prepare` if DVC thinks it is up to date)"
    )
    try:
        recorded = json.loads(path.read_text())
        md5, sizes = recorded["md5"], recorded["bytes"]
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the prepared data predates it); {rerun}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: unreadable ({error}); {rerun}") from None
    for name, size in sizes.items():
        actual = (prepared / name).stat().st_size if (prepared / name).is_file() else None
        if actual != size:
            raise UserError(f"{prepared / name}: {actual} bytes, but prepare wrote {size}; {rerun}")
    return str(md5)


@dataclass(frozen=True)
class PreparedData:
    """The prepared images and their index, row for row."""

    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped
    index: pd.DataFrame  # one row per image: image_id, split, attributes...

    def split(self, name: str) -> np.ndarray:
        """The images of one split, in index order (empty when the split does not exist)."""
        return np.ascontiguousarray(
            self.images[np.flatnonzero(self.index["split"].to_numpy() == name)]
        )

    def ids(self, split: str) -> list[str]:
        """The ``image_id`` of each image of one split, in index order (as :meth:`split`)."""
        rows = self.index["split"].to_numpy() == split
        return [str(value) for value in self.index["image_id"].to_numpy()[rows]]

    def has_split(self, name: str) -> bool:
        """Whether any image is in split ``name``."""
        return bool((self.index["split"] == name).any())


def load_prepared(prepared: Path, columns: list[str] | None = None) -> PreparedData:
    """The images (memory-mapped) and the index (only ``columns`` when given) of ``prepared``."""
    images_path, index_path = prepared / IMAGES_FILE, prepared / INDEX_FILE
    if not images_path.is_file() or not index_path.is_file():
        raise UserError(f"{prepared}: no prepared data; run `dvc repro prepare` first")
    read_fingerprint(prepared)  # the files still have the sizes prepare wrote, before any read
    images = np.load(images_path, mmap_mode="r", allow_pickle=False)
    import pandas as pd

    index = pd.read_csv(index_path, usecols=columns)
    if len(index) != len(images):
        raise UserError(
            f"{prepared}: {len(images)} images but {len(index)} index rows; "
            "rerun `dvc repro prepare`"
        )
    return PreparedData(images, index)


def load_split(prepared: Path, split: str) -> np.ndarray:
    """The (N, H, W, C) uint8 images of one split of ``prepared``, which must not be empty."""
    images = load_prepared(prepared, columns=["split"]).split(split)
    if len(images) == 0:
        raise UserError(f"{prepared}: the '{split}' split is empty; see data.split in params.yaml")
    return images
