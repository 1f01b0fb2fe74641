"""Write outputs under a temporary name and rename, so a killed stage leaves no half output.

A temporary name carries the writer's process id, ``.<name>.tmp-<pid>-<random>`` (and
``.<name>.old-<pid>-<random>`` for the old output moved aside). A killed writer cannot
remove its own, so the next write of the same output does: it removes the temporaries of
that output whose process no longer exists, and leaves alone those of a live process and
every other file.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaelab.errors import UserError, causes

# What a full disk (or a full quota) raises as, often deep in a chain: torch.save reports it as
# "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos", caused by the OSError.
FULL = (errno.ENOSPC, errno.EDQUOT)


def _default_mode(mode: int) -> int:
    """``mode`` under the process umask: what ``open``/``mkdir`` would have given."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{os.getpid()}-"


def _disk_full(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from or during, is a full disk."""
    return any(isinstance(e, OSError) and e.errno in FULL for e in causes(error))


def _no_space(dest: Path, error: BaseException) -> UserError:
    free = shutil.disk_usage(dest.parent).free if dest.parent.exists() else 0
    return UserError(
        f"{dest}: no space left on the device ({free:,} bytes free in {dest.parent}); nothing "
        "half-written was kept: free some space and rerun (a training resumes from its last "
        f"checkpoint) [{type(error).__name__}]"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True


def remove_leftovers(dest: Path) -> list[Path]:
    """Remove the temporaries of ``dest`` that a writer killed before its rename left behind
    (their process has exited); returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.(?:tmp|old)-(\d+)-[^/]+")
    removed: list[Path] = []
    if not dest.parent.is_dir():
        return removed
    for path in dest.parent.iterdir():
        found = pattern.fullmatch(path.name)
        if found is None or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


@contextmanager
def atomic_directory(dest: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; on success it replaces ``dest``.

    On any exception the staging folder is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest)
    staging = Path(tempfile.mkdtemp(prefix=_prefix(dest, "tmp"), dir=dest.parent))
    # mkdtemp makes the folder owner-only; outputs get the usual permissions.
    os.chmod(staging, _default_mode(0o777))
    try:
        yield staging
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if _disk_full(error):
            raise _no_space(dest, error) from error
        raise
    if dest.exists():
        # Move the old output aside first so the swap itself is a single rename.
        old = Path(tempfile.mkdtemp(prefix=_prefix(dest, "old"), dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(staging, dest)
        shutil.rmtree(old)
    else:
        os.replace(staging, dest)


@contextmanager
def atomic_file(dest: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``dest``; on success rename it to ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(dest, "tmp"), dir=dest.parent)
    tmp = Path(tmp_name)
    os.chmod(tmp, _default_mode(0o666))  # mkstemp's 0600 would make every output owner-only
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if _disk_full(error):
            raise _no_space(dest, error) from error
        raise
