"""Prepare many images on every core, in task order, with byte-identical output.

:func:`process_all` runs :func:`vaelab.data.imaging.process_image` over a list
of tasks. With more than one worker it uses a process pool whose workers get the
:class:`ImageSpec` once (through the pool initializer) and return results in task
order (``imap``), so the output does not depend on the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from vaelab.data.imaging import ImageResult, ImageSpec, process_image

Source = str | os.PathLike[str] | np.ndarray
Task = tuple[Source, np.ndarray | None]

# Tasks per chunk sent to a worker: large enough to amortise the pipe round trip,
# small enough that the progress bar moves and the last chunks balance out.
_MAX_CHUNK = 64
_CHUNKS_PER_WORKER = 8


@dataclass
class PoolResult:
    """Every kept image, in task order, and what happened to the others."""

    pixels: np.ndarray  # (n_kept, size, size, channels) uint8, in task order
    kept: np.ndarray  # bool mask over tasks
    skipped: dict[int, str] = field(default_factory=dict)  # task index -> reason
    fell_back: int = 0  # detect found no face and used the centre crop


# Set once per worker process by the pool initializer.
_worker_spec: ImageSpec | None = None


def _init_worker(spec: ImageSpec) -> None:
    global _worker_spec
    _worker_spec = spec


def _run_task(task: Task) -> ImageResult:
    assert _worker_spec is not None, "pool worker used without _init_worker"
    source, landmarks = task
    return process_image(source, _worker_spec, landmarks)


def _context() -> multiprocessing.context.BaseContext:
    # fork starts workers instantly and shares what the parent imported; it is the
    # safe, usual choice on Linux. Elsewhere use the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def process_all(
    tasks: Sequence[Task],
    spec: ImageSpec,
    *,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "prepare",
) -> PoolResult:
    """Run process_image over ``tasks`` ((source, landmarks or None) pairs).

    ``workers`` None uses every core (os.cpu_count()); 1 runs in this process.
    The output is the same, byte for byte, for any number of workers.
    """
    n = len(tasks)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = max(1, min(workers, n))

    pixels = np.empty((n, spec.size, spec.size, spec.channels), dtype=np.uint8)
    kept = np.zeros(n, dtype=bool)
    skipped: dict[int, str] = {}
    fell_back = 0
    n_kept = 0

    def collect(results: Iterable[ImageResult], bar: tqdm) -> None:
        nonlocal n_kept, fell_back
        for index, result in enumerate(results):
            if result.pixels is None:
                skipped[index] = result.skipped or "skipped"
            else:
                pixels[n_kept] = result.pixels
                n_kept += 1
                kept[index] = True
                fell_back += result.fell_back
            bar.update(1)

    if workers == 1:
        with tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar:
            collect((process_image(source, spec, marks) for source, marks in tasks), bar)
    else:
        chunksize = max(1, min(_MAX_CHUNK, math.ceil(n / (workers * _CHUNKS_PER_WORKER))))
        # Start the workers before tqdm starts its monitor thread (fork copies threads badly).
        with _context().Pool(workers, initializer=_init_worker, initargs=(spec,)) as pool:
            results = pool.imap(_run_task, tasks, chunksize=chunksize)
            with tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar:
                collect(results, bar)

    # A leading slice of a C-contiguous array is contiguous; skipped images are few,
    # so keep the view rather than copying every kept image again.
    return PoolResult(pixels=pixels[:n_kept], kept=kept, skipped=skipped, fell_back=fell_back)
