"""The ``prepare`` stage: decode, crop, resize and split into one uint8 array and an index."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from vaelab.config import Params
from vaelab.config.data_config import DataConfig
from vaelab.data.datasets import DATASETS
from vaelab.data.datasets.catalog import Catalog
from vaelab.data.imaging import ImageSpec
from vaelab.data.pool import PoolResult, Task, process_all
from vaelab.data.prepared_data import write_prepared
from vaelab.data.split import OOD, SPLITS, assign_splits
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory
from vaelab.io.metric_files import headline_of, metric_files
from vaelab.kernels import in_force

log = logging.getLogger("vaelab.prepare")

PREPARED_DIR = Path("data/prepared")
DATA_METRICS = Path("metrics/data.json")
# Its DVC metrics (headline key -> key of the detail, metrics/detail/data.json); the images
# per split, the skipped files, their reasons and the timings are in the detail and timing
# files beside it.
DATA_HEADLINE = {"images": "images", "skipped": "skipped.count"}
# A skip reason that is a choice (detect.on_miss: skip), not a broken file.
NO_FACE = "no face detected"


def run_prepare(
    params: Params,
    raw_root: Path = Path("data/raw"),
    out_dir: Path = PREPARED_DIR,
    metrics_path: Path = DATA_METRICS,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out_dir/images.npy`` (N×H×W×C uint8), ``out_dir/index.csv`` and the data
    metrics (headline ``metrics_path``; detail and timing files under ``metrics/detail/`` and
    ``metrics/timing/``)."""
    cfg = params.data
    raw = raw_root / cfg.dataset
    catalog = _load_catalog(raw, cfg)
    total = len(catalog.sources)
    spec = ImageSpec(
        size=cfg.image_size, channels=cfg.channels, crop=cfg.crop, resample=cfg.resample
    )
    tasks = _tasks(catalog)
    workers = min(cfg.workers or os.cpu_count() or 1, total)
    started = time.perf_counter()
    result = process_all(tasks, spec, workers=workers, progress=progress)
    seconds = time.perf_counter() - started

    skipped = _skipped_files(catalog, result)
    _check_bad_fraction(skipped, total, cfg, raw)
    index = _split_index(catalog, result, params)

    with atomic_directory(out_dir) as staging:
        write_prepared(staging, result.pixels, index)

    metrics = _data_metrics(cfg.dataset, index, result, skipped)
    timing = {
        "workers": workers,
        "kernels": in_force(),
        "seconds": round(seconds, 3),
        "images_per_second": round(total / seconds, 1) if seconds > 0 else None,
    }
    files = metric_files(metrics_path.parent, metrics_path.name)
    files.write(headline_of(metrics, DATA_HEADLINE), metrics, timing)
    log.info(
        "prepared %d images %s in %.2fs (%.0f images/s); splits %s; skipped %d",
        len(index),
        tuple(result.pixels.shape[1:]),
        seconds,
        total / max(seconds, 1e-9),
        metrics["splits"],
        len(skipped),
    )
    return metrics | timing


def _load_catalog(raw: Path, cfg: DataConfig) -> Catalog:
    """The data set's catalog, cut to ``data.limit``; a UserError when it holds no image."""
    if not raw.is_dir():
        raise UserError(
            f"{raw}: no raw data for data.dataset '{cfg.dataset}'; run `dvc repro download` first"
        )
    catalog = DATASETS[cfg.dataset].catalog(raw, cfg)
    if cfg.limit is not None:
        catalog = Catalog(
            index=catalog.index.iloc[: cfg.limit].reset_index(drop=True),
            sources=catalog.sources[: cfg.limit],
            landmarks=None if catalog.landmarks is None else catalog.landmarks[: cfg.limit],
        )
    if len(catalog.sources) == 0:
        raise UserError(f"{raw}: the data set holds no images")
    return catalog


def _tasks(catalog: Catalog) -> list[Task]:
    """One (source, landmarks or None) task per image of ``catalog``."""
    total = len(catalog.sources)
    landmarks = catalog.landmarks if catalog.landmarks is not None else [None] * total
    return list(zip(catalog.sources, landmarks, strict=False))


def _skipped_files(catalog: Catalog, result: PoolResult) -> list[dict[str, str]]:
    """The skipped images, in catalog order, each with the reason."""
    return [
        {"image_id": str(catalog.index["image_id"].iloc[i]), "reason": reason}
        for i, reason in sorted(result.skipped.items())
    ]


def _check_bad_fraction(
    skipped: list[dict[str, str]], total: int, cfg: DataConfig, raw: Path
) -> None:
    """A UserError when more than ``data.max_bad_fraction`` of the images could not be used
    (images without a detected face, skipped by choice, do not count)."""
    bad = [s for s in skipped if s["reason"] != NO_FACE]
    bad_fraction = len(bad) / total
    if bad_fraction > cfg.max_bad_fraction:
        examples = "; ".join(f"{s['image_id']}: {s['reason']}" for s in bad[:5])
        raise UserError(
            f"{len(bad)} of {total} images ({bad_fraction:.1%}) could not be used, above "
            f"data.max_bad_fraction {cfg.max_bad_fraction:g} (e.g. {examples}). Fix data.crop "
            f"if the reasons name the crop, else re-download the data (delete {raw} and run "
            "`dvc repro download`), or raise data.max_bad_fraction."
        )


def _split_index(catalog: Catalog, result: PoolResult, params: Params) -> pd.DataFrame:
    """The index of the kept images with their split as the second column."""
    index = catalog.index.loc[result.kept].reset_index(drop=True)
    index.insert(1, "split", assign_splits(index, params.data.split, params.seed))
    return index.drop(columns=["partition"], errors="ignore")


def _data_metrics(
    dataset: str, index: pd.DataFrame, result: PoolResult, skipped: list[dict[str, str]]
) -> dict[str, Any]:
    """The detail record: image count and shape, split sizes, the skipped files."""
    counts = Counter(index["split"])
    return {
        "dataset": dataset,
        "images": len(index),
        "image_shape": list(result.pixels.shape[1:]),
        "splits": {name: int(counts.get(name, 0)) for name in (*SPLITS, OOD)},
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(Counter(s["reason"].split(":")[0] for s in skipped)),
            "files": skipped,
        },
        "detect_fallbacks": int(result.fell_back),
    }
