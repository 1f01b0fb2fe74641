"""Prepare many images on every core, in task order, with byte-identical output.

:func:`process_all` does what :func:`vaelab.data.imaging.process_image` does to
each task, a range of tasks at a time: decode and crop each image
(:func:`~vaelab.data.imaging.load_crop`), then resize the range's crops together
(:func:`~vaelab.data.imaging.resize_batch`, one torch call per crop shape). With
more than one worker it uses a process pool. The workers get the
:class:`ImageSpec` and the task list once, through the pool initializer, and are
then handed only ``(start, stop)`` ranges of task indices through ``imap``, which
returns in order. Every image lands in the row of its own task index, so the
output does not depend on the number of workers.

On Linux the pool forks and the output array lives in anonymous shared memory
that the workers write straight into: the parent moves no pixels, so it does not
become the bottleneck (sending 12 KB per image back through multiprocessing's
pipes costs the parent about as much CPU as decoding it did the worker). Where
fork is unavailable, workers send back each range's pixels as one bytes object.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from vaelab.data.imaging import ImageSpec, load_crop, resize_batch

Source = str | os.PathLike[str] | np.ndarray
Task = tuple[Source, np.ndarray | None]

# Tasks per range handed to a worker: large enough to amortise the round trip,
# small enough that the progress bar moves and the last ranges balance out.
_MAX_RANGE = 64
_RANGES_PER_WORKER = 8
# Rows moved at a time when squeezing out skipped images.
_COMPACT_ROWS = 4096


@dataclass
class PoolResult:
    """Every kept image, in task order, and what happened to the others."""

    pixels: np.ndarray  # (n_kept, size, size, channels) uint8, in task order
    kept: np.ndarray  # bool mask over tasks
    skipped: dict[int, str] = field(default_factory=dict)  # task index -> reason
    fell_back: int = 0  # detect found no face and used the centre crop


# Per-worker state, set once by the pool initializer.
_spec: ImageSpec | None = None
_tasks: Sequence[Task] = ()
_shared_out: np.ndarray | None = None

# One entry per task of a range: None when kept, else the reason it was skipped;
# plus how many of the range's kept images fell back to the centre crop.
_Statuses = list[str | None]


def _init_worker(spec: ImageSpec, tasks: Sequence[Task], shared: mmap.mmap | None) -> None:
    global _spec, _tasks, _shared_out
    # One process per core already: torch's resize must not start threads of its own.
    torch.set_num_threads(1)
    _spec, _tasks = spec, tasks
    _shared_out = None if shared is None else _as_images(shared, len(tasks), spec)


def _as_images(buffer: mmap.mmap, n: int, spec: ImageSpec) -> np.ndarray:
    shape = (n, spec.size, spec.size, spec.channels)
    return np.frombuffer(buffer, dtype=np.uint8, count=math.prod(shape)).reshape(shape)


def _prepare_range(
    tasks: Sequence[Task], start: int, stop: int, spec: ImageSpec
) -> tuple[list[int], np.ndarray, _Statuses, int]:
    """Prepare tasks[start:stop]: (kept task indices, their pixels, statuses, fallbacks)."""
    statuses: _Statuses = []
    rows: list[int] = []
    crops: list[np.ndarray] = []
    fell_back = 0
    for index in range(start, stop):
        source, landmarks = tasks[index]
        result = load_crop(source, spec, landmarks)
        if result.pixels is None:
            statuses.append(result.skipped or "skipped")
            continue
        statuses.append(None)
        fell_back += result.fell_back
        rows.append(index)
        crops.append(result.pixels)
    pixels = resize_batch(crops, spec.size, spec.resample)
    return rows, pixels.reshape(len(rows), spec.size, spec.size, spec.channels), statuses, fell_back


def _run_range(bounds: tuple[int, int]) -> tuple[bytes | None, _Statuses, int]:
    """Process tasks[start:stop]; write pixels to shared memory or return them packed."""
    assert _spec is not None, "pool worker used without _init_worker"
    rows, pixels, statuses, fell_back = _prepare_range(_tasks, *bounds, _spec)
    if _shared_out is not None:
        _shared_out[rows] = pixels
        return None, statuses, fell_back
    return pixels.tobytes(), statuses, fell_back


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread for the block, as in a pool worker; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _use_fork() -> bool:
    # fork starts workers at once, shares the task list and the output memory, and
    # is the usual choice on Linux; elsewhere the platform default (spawn) is safer.
    return sys.platform.startswith("linux")


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
    tally = _Tally(np.zeros(n, dtype=bool))
    if workers == 1:
        pixels = _process_here(tasks, spec, tally, progress=progress, desc=desc)
    else:
        pixels = _process_in_pool(tasks, spec, workers, tally, progress=progress, desc=desc)
    return PoolResult(_compact(pixels, tally.kept), tally.kept, tally.skipped, tally.fell_back)


@dataclass
class _Tally:
    """Which tasks were kept, why the others were skipped, and how many fell back."""

    kept: np.ndarray  # bool mask over tasks
    skipped: dict[int, str] = field(default_factory=dict)
    fell_back: int = 0

    def record(self, start: int, statuses: _Statuses) -> None:
        """Note the statuses of the range of tasks that begins at ``start``."""
        for offset, reason in enumerate(statuses):
            if reason is None:
                self.kept[start + offset] = True
            else:
                self.skipped[start + offset] = reason


def _process_here(
    tasks: Sequence[Task], spec: ImageSpec, tally: _Tally, *, progress: bool, desc: str
) -> np.ndarray:
    """Every task in this process, a range at a time: the (n, size, size, channels) pixels."""
    n = len(tasks)
    pixels = np.empty((n, spec.size, spec.size, spec.channels), dtype=np.uint8)
    with _one_thread(), tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar:
        for start in range(0, n, _MAX_RANGE):
            stop = min(start + _MAX_RANGE, n)
            rows, range_pixels, statuses, fell = _prepare_range(tasks, start, stop, spec)
            pixels[rows] = range_pixels
            tally.record(start, statuses)
            tally.fell_back += fell
            bar.update(stop - start)
    return pixels


def _process_in_pool(
    tasks: Sequence[Task],
    spec: ImageSpec,
    workers: int,
    tally: _Tally,
    *,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Every task on a pool of ``workers`` processes: the (n, size, size, channels) pixels."""
    n = len(tasks)
    shape = (n, spec.size, spec.size, spec.channels)
    size = max(1, math.ceil(n / (workers * _RANGES_PER_WORKER)))
    size = min(_MAX_RANGE, size)
    ranges = [(start, min(start + size, n)) for start in range(0, n, size)]
    fork = _use_fork()
    shared = mmap.mmap(-1, max(1, math.prod(shape))) if fork else None
    pixels = _as_images(shared, n, spec) if shared is not None else np.empty(shape, np.uint8)
    context = multiprocessing.get_context("fork" if fork else None)
    # Fork the workers before tqdm starts its monitor thread.
    with (
        context.Pool(workers, _init_worker, (spec, tasks, shared)) as pool,
        tqdm(total=n, unit="img", desc=desc, disable=not progress) as bar,
    ):
        for (start, stop), (packed, statuses, fell) in zip(
            ranges, pool.imap(_run_range, ranges, chunksize=1), strict=True
        ):
            tally.record(start, statuses)
            tally.fell_back += fell
            if packed is not None:
                rows = [start + i for i, reason in enumerate(statuses) if reason is None]
                pixels[rows] = np.frombuffer(packed, np.uint8).reshape(-1, *shape[1:])
            bar.update(stop - start)
    return pixels


def _compact(pixels: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Move the kept rows to the front, in order, in place; return that leading view."""
    rows = np.flatnonzero(kept)
    if len(rows) == len(kept):
        return pixels
    # Row i moves to position <= i, so copying blocks front to back never reads a
    # row that was already overwritten (the fancy-indexed read copies the block first).
    for dst in range(0, len(rows), _COMPACT_ROWS):
        block = rows[dst : dst + _COMPACT_ROWS]
        pixels[dst : dst + len(block)] = pixels[block]
    return pixels[: len(rows)]
