"""md5 of files, read in chunks: downloads are checked with it, checkpoints and registry
versions are keyed by it; and of arrays (the test split an evaluation measured). SHA-256 of
a file, for weights published under their SHA-256 prefix (the Inception weights of FID)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def md5sum(path: Path, chunk_size: int = CHUNK) -> str:
    """The hex md5 of the file at ``path``."""
    return md5_of_files([path], chunk_size)


def md5_of_files(paths: Iterable[Path], chunk_size: int = CHUNK) -> str:
    """One hex md5 over the bytes of ``paths`` in order (their contents concatenated)."""
    digest = hashlib.md5(usedforsecurity=False)
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()


def sha256sum(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def md5_of_array(array: np.ndarray) -> str:
    """The hex md5 of ``array``'s dtype, shape and bytes (C order): equal arrays, equal md5s."""
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(f"{array.dtype.str} {array.shape}\0".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
