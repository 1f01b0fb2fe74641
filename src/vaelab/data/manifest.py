"""MANIFEST.json: every file of a raw data set with its size and md5."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from vaelab.data.datasets.catalog import DownloadReport
from vaelab.io.hashing import md5sum
from vaelab.io.json_files import write_json

MANIFEST = "MANIFEST.json"


def write_manifest(folder: Path, dataset: str, report: DownloadReport) -> dict[str, Any]:
    """Write ``folder/MANIFEST.json`` (every other file's path, size and md5, and ``report``)
    and return what it holds."""
    files: list[dict[str, Any]] = [
        {
            "file": path.relative_to(folder).as_posix(),
            "bytes": path.stat().st_size,
            "md5": md5sum(path),
        }
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    ]
    manifest = {
        "dataset": dataset,
        **asdict(report),
        "count": len(files),
        "bytes": sum(f["bytes"] for f in files),
        "files": files,
    }
    write_json(folder / MANIFEST, manifest)
    return manifest
