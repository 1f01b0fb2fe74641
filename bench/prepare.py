"""Benchmark: vaelab's image preparation against the plain per-image PIL pipeline.

Run as ``.venv/bin/python bench/prepare.py [--images N] [--workers W]``.

It writes N synthetic 178x218 RGB JPEGs shaped like CelebA's aligned images
(quality 90, smooth face-like content plus sensor-like noise, ~7 KB each) into a
temporary folder, then times, on the same files:

* vaelab: ``process_all`` with a centre crop of 148 and 64x64 RGB output, on W
  workers (default: every core) and on one process;
* plain: what a user would write, one process: ``Image.open(p).convert("RGB")``
  (a full decode), ``.crop`` the centre 148 square, ``.resize((64, 64), LANCZOS)``,
  ``np.asarray``. Same filter, so the comparison is fair.

Each measurement is warmed up once and repeated; the best time counts. It
prints per-core rates and whether the targets hold (>= 1000 images/s per core
for vaelab, >= 2x the plain pipeline per core). It always exits 0: it measures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from vaelab.config.data import CropConfig
from vaelab.data.imaging import ImageSpec
from vaelab.data.pool import process_all

HEIGHT, WIDTH = 218, 178  # CelebA's aligned images
CROP = 148
OUT_SIZE = 64
JPEG_QUALITY = 90
TARGET_PER_CORE = 1000.0
TARGET_RATIO = 2.0


def synthetic_face(rng: np.random.Generator) -> Image.Image:
    """A smooth face-like picture with JPEG-relevant texture (about 7 KB at quality 90)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (x / WIDTH * rng.uniform(-1, 1) + y / HEIGHT * rng.uniform(-1, 1))[..., None]
    img = top * (1 - t) + bottom * t  # background gradient
    cy, cx = HEIGHT * 0.52 + rng.normal(0, 4), WIDTH / 2 + rng.normal(0, 4)
    skin = rng.uniform(90, 230, 3) * np.array([1.0, 0.8, 0.7])
    face = ((y - cy) / (HEIGHT * 0.28)) ** 2 + ((x - cx) / (WIDTH * 0.3)) ** 2 < 1
    shade = 1 - 0.3 * ((x - cx) / WIDTH)[..., None]
    img = np.where(face[..., None], skin * shade, img)
    hair = (((y - cy + HEIGHT * 0.2) / (HEIGHT * 0.22)) ** 2 + ((x - cx) / (WIDTH * 0.36)) ** 2 < 1) & (
        y < cy - HEIGHT * 0.1
    )
    img = np.where(hair[..., None], rng.uniform(10, 120, 3), img)
    for side in (-1, 1):
        eye = ((y - (cy - HEIGHT * 0.05)) / 4) ** 2 + ((x - (cx + side * WIDTH * 0.12)) / 8) ** 2 < 1
        img[eye] = 30
    mouth = ((y - (cy + HEIGHT * 0.14)) / 3) ** 2 + ((x - cx) / 14) ** 2 < 1
    img[mouth] = skin * 0.5
    smooth = Image.fromarray(img.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2.0))
    noisy = np.asarray(smooth, dtype=np.float32) + rng.normal(0, 3.5, (HEIGHT, WIDTH, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        synthetic_face(rng).save(path, "JPEG", quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def plain_pipeline(paths: list[Path]) -> np.ndarray:
    """The straightforward per-image PIL pipeline, single process."""
    out = np.empty((len(paths), OUT_SIZE, OUT_SIZE, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB")
        w, h = img.size
        left, top = (w - CROP) // 2, (h - CROP) // 2
        img = img.crop((left, top, left + CROP, top + CROP))
        img = img.resize((OUT_SIZE, OUT_SIZE), Image.Resampling.LANCZOS)
        out[i] = np.asarray(img)
    return out


def best_rate(run: Callable[[], object], n: int, repeats: int) -> float:
    """Images per second of the fastest of ``repeats`` runs, after one warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="number of JPEGs (default 3000)")
    parser.add_argument("--workers", type=int, default=None, help="vaelab workers (default: all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best counts)")
    args = parser.parse_args(argv)

    n = args.images
    workers = min(args.workers or os.cpu_count() or 1, n)
    spec = ImageSpec(size=OUT_SIZE, channels=3, crop=CropConfig(method="center", size=CROP))

    with tempfile.TemporaryDirectory(prefix="vaelab-bench-") as tmp:
        paths = write_images(Path(tmp), n)
        mean_kb = sum(p.stat().st_size for p in paths) / n / 1024
        tasks = [(p, None) for p in paths]
        print(f"{n} synthetic {WIDTH}x{HEIGHT} JPEGs, mean {mean_kb:.1f} KB (quality {JPEG_QUALITY})")
        print(f"cores: {os.cpu_count()}, vaelab workers: {workers}")
        print(f"task: centre crop {CROP} -> {OUT_SIZE}x{OUT_SIZE} RGB, LANCZOS\n")

        vaelab_multi = best_rate(
            lambda: process_all(tasks, spec, workers=workers, progress=False), n, args.repeats
        )
        vaelab_single = best_rate(
            lambda: process_all(tasks, spec, workers=1, progress=False), n, args.repeats
        )
        plain = best_rate(lambda: plain_pipeline(paths), n, args.repeats)

        # How far apart are the two pipelines' pixels? (draft decoding vs full decode)
        diff = np.abs(
            process_all(tasks[:200], spec, workers=1, progress=False).pixels.astype(np.int16)
            - plain_pipeline(paths[:200]).astype(np.int16)
        ).mean()

    per_core = vaelab_multi / workers
    ratio = per_core / plain
    print(f"vaelab, {workers} workers:   {vaelab_multi:8.0f} images/s total, {per_core:7.0f} images/s per core")
    print(f"vaelab, 1 process:    {vaelab_single:8.0f} images/s")
    print(f"plain PIL, 1 process: {plain:8.0f} images/s")
    print(f"per-core ratio vaelab/plain: {ratio:.2f}x  (1-process ratio: {vaelab_single / plain:.2f}x)")
    print(f"mean |vaelab - plain| pixel difference: {diff:.2f} / 255\n")
    ok_rate = per_core >= TARGET_PER_CORE
    ok_ratio = ratio >= TARGET_RATIO
    print(f"target >= {TARGET_PER_CORE:.0f} images/s per core: {'MET' if ok_rate else 'NOT MET'} ({per_core:.0f})")
    print(f"target >= {TARGET_RATIO:.0f}x plain per core:      {'MET' if ok_ratio else 'NOT MET'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
