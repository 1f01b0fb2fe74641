"""The ``download`` stage: fetch the configured data set into data/raw/<dataset>/."""

from __future__ import annotations

import logging
from pathlib import Path

from vaelab.config import Params
from vaelab.data.datasets import DATASETS
from vaelab.data.manifest import write_manifest
from vaelab.io.atomic import atomic_directory

log = logging.getLogger("vaelab.download")

RAW_ROOT = Path("data/raw")


def run_download(params: Params, raw_root: Path = RAW_ROOT) -> Path:
    """Write ``raw_root/<dataset>/`` in the data set's official layout plus MANIFEST.json.

    The folder appears only when everything succeeded; large downloads are cached in
    ``data.download.cache_dir`` so that a rerun or a resumed download is cheap.
    """
    cfg = params.data
    module = DATASETS[cfg.dataset]
    dest = raw_root / cfg.dataset
    cache = Path(cfg.download.cache_dir) / cfg.dataset
    with atomic_directory(dest) as staging:
        report = module.download(cfg, staging, cache)
        manifest = write_manifest(staging, cfg.dataset, report)
    log.info(
        "%s: %d files, %d bytes in %s", cfg.dataset, manifest["count"], manifest["bytes"], dest
    )
    for name, reason in report.missing.items():
        log.warning("%s: optional file %s is absent (%s)", cfg.dataset, name, reason)
    return dest
