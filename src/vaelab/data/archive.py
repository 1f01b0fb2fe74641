"""Extract zip and tar archives without trusting them.

Every member is checked before anything is written: no absolute paths, no ``..``,
no links or special files, and the declared size of what is extracted must fit
``max_bytes``. The bytes actually written are counted too, so a header that lies
about a member's size cannot get past the cap. Files are written under a temporary
name and renamed, so a file under its final name is always complete.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Generic, TypeVar

from vaelab.errors import UserError

Select = Callable[[str], bool]
M = TypeVar("M")

_DRIVE = re.compile(r"^[A-Za-z]:")
_COPY_CHUNK = 1 << 20
_TMP_SUFFIX = ".vaelab-extract"

# What a corrupt archive raises while being opened or read.
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError)

_UNTRUSTED = (
    "refusing to extract anything from it. Download the archive again from the official "
    "source, or check where this file came from"
)


class UnsafeArchiveError(UserError):
    """An archive member would be written outside the destination or is not a plain file."""


class ArchiveTooLargeError(UserError):
    """The extracted data would exceed the configured size limit."""


class CorruptArchiveError(UserError):
    """The archive cannot be read (truncated or damaged)."""


@dataclass(frozen=True)
class _Planned(Generic[M]):
    """A member that passed the checks and will be extracted to ``parts`` under dest."""

    member: M
    name: str
    parts: tuple[str, ...]
    is_dir: bool


def extract_zip(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int,
    select: Select | None = None,
    strip: str = "",
) -> list[Path]:
    """Extract the regular files of the zip ``archive`` into ``dest``.

    ``select`` keeps only the members whose archive name it accepts; ``strip`` removes a
    leading folder prefix, and members outside that prefix are skipped. Returns the
    written files in archive order.

    Raises :class:`UnsafeArchiveError` for any absolute, ``..``, link or special
    member, :class:`ArchiveTooLargeError` when the selected members exceed
    ``max_bytes`` and :class:`CorruptArchiveError` when the zip cannot be read.
    """
    archive = Path(archive)
    with _reading(archive), zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(archive, info.filename)
            _check_zip_type(archive, info)
        plan = _plan(
            archive,
            ((info, info.filename, info.is_dir(), info.file_size) for info in infos),
            max_bytes=max_bytes,
            select=select,
            strip=strip,
        )
        return _write(archive, dest, plan, max_bytes=max_bytes, open_member=zf.open)


def extract_tar(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int,
    select: Select | None = None,
    strip: str = "",
) -> list[Path]:
    """Extract the regular files of the tar ``archive`` (plain, gz, bz2 or xz) into ``dest``.

    Same contract as :func:`extract_zip`.
    """
    archive = Path(archive)
    with _reading(archive), tarfile.open(archive, mode="r:*") as tf:
        members = tf.getmembers()
        for member in members:
            _check_name(archive, member.name)
            _check_tar_type(archive, member)
        plan = _plan(
            archive,
            ((m, m.name, m.isdir(), m.size) for m in members),
            max_bytes=max_bytes,
            select=select,
            strip=strip,
        )

        def open_member(member: tarfile.TarInfo) -> IO[bytes]:
            handle = tf.extractfile(member)
            if handle is None:  # pragma: no cover - only regular files reach here
                raise CorruptArchiveError(f"{archive}: cannot read member {member.name!r}")
            return handle

        # Members are extracted in archive order, so a compressed stream is read
        # forward once after the listing pass instead of being rewound per member.
        return _write(archive, dest, plan, max_bytes=max_bytes, open_member=open_member)


@contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Turn read errors of a damaged or missing archive into user errors."""
    if not archive.is_file():
        raise CorruptArchiveError(
            f"archive {archive} does not exist; download it first (or fix the path in params.yaml)"
        )
    try:
        yield
    except _CORRUPT as err:
        raise CorruptArchiveError(
            f"cannot read archive {archive}: {type(err).__name__}: {err}. The file is "
            f"damaged or incomplete; delete it and run again to download it afresh."
        ) from err


def _split(name: str) -> list[str]:
    """Split a member name on / and \\ (zips made on Windows use both)."""
    return [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]


def _check_name(archive: Path, name: str) -> None:
    """Refuse names that could land outside the destination folder."""
    if "\x00" in name:
        reason = "contains a NUL byte"
    elif name.startswith(("/", "\\")) or _DRIVE.match(name):
        reason = "has an absolute path"
    elif ".." in re.split(r"[/\\]", name):
        reason = "contains a '..' path component"
    else:
        return
    raise UnsafeArchiveError(f"{archive}: member {name!r} {reason}; {_UNTRUSTED}.")


def _check_zip_type(archive: Path, info: zipfile.ZipInfo) -> None:
    """Refuse zip members that are links or special files, and encrypted ones."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symlink; {_UNTRUSTED}.")
    # Zips made on Windows carry no unix mode (kind 0); those are plain files or folders.
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(
            f"{archive}: member {info.filename!r} is a special file "
            f"(mode {oct(mode)}); {_UNTRUSTED}."
        )
    if info.flag_bits & 0x1:
        raise CorruptArchiveError(
            f"{archive}: member {info.filename!r} is encrypted; vaelab cannot read "
            f"password-protected archives. Use the unencrypted archive from the official source."
        )


def _check_tar_type(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse tar members other than regular files and folders."""
    if member.isreg() or member.isdir():
        return
    if member.issym():
        kind = f"a symlink to {member.linkname!r}"
    elif member.islnk():
        kind = f"a hard link to {member.linkname!r}"
    elif member.isdev():
        kind = "a device or FIFO"
    else:
        kind = f"of unsupported type {member.type!r}"
    raise UnsafeArchiveError(f"{archive}: member {member.name!r} is {kind}; {_UNTRUSTED}.")


def _plan(
    archive: Path,
    members: Iterable[tuple[M, str, bool, int]],
    *,
    max_bytes: int,
    select: Select | None,
    strip: str,
) -> list[_Planned[M]]:
    """Choose the members to extract and check their declared total against ``max_bytes``."""
    prefix = tuple(_split(strip))
    plan: list[_Planned[M]] = []
    declared = 0
    for member, name, is_dir, size in members:
        parts = tuple(_split(name))
        if parts[: len(prefix)] != prefix:
            continue
        parts = parts[len(prefix) :]
        if select is not None and not select(name):
            continue
        if not parts:
            if is_dir:
                continue  # the stripped prefix folder itself
            raise UnsafeArchiveError(f"{archive}: member {name!r} has no file name; {_UNTRUSTED}.")
        if not is_dir:
            declared += size
            if declared > max_bytes:
                raise ArchiveTooLargeError(
                    f"{archive}: extracting it would write more than {max_bytes:,} bytes "
                    f"(the limit is passed at member {name!r}). If the archive is the right "
                    f"one, raise data.download.max_extract_bytes in params.yaml; otherwise "
                    f"delete it and download it again."
                )
        plan.append(_Planned(member, name, parts, is_dir))
    return plan


class _CappedWriter:
    """File-like sink that counts bytes and refuses to go past the extraction cap."""

    def __init__(self, handle: IO[bytes], *, budget: int, archive: Path, name: str) -> None:
        self._handle = handle
        self._budget = budget
        self._archive = archive
        self._name = name
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._budget:
            raise ArchiveTooLargeError(
                f"{self._archive}: member {self._name!r} holds more data than its header "
                f"declares, passing the {self._budget:,}-byte extraction limit. The archive "
                f"is damaged or forged: delete it and the partly extracted folder, then "
                f"download it again from the official source."
            )
        return self._handle.write(data)


def _write(
    archive: Path,
    dest: Path,
    plan: list[_Planned[M]],
    *,
    max_bytes: int,
    open_member: Callable[[M], IO[bytes]],
) -> list[Path]:
    """Write the planned members under ``dest``; return the files in archive order."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    ready_dirs: set[Path] = set()
    written: list[Path] = []
    remaining = max_bytes
    for item in plan:
        target = dest.joinpath(*item.parts)
        folder = target if item.is_dir else target.parent
        if folder not in ready_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            # A symlink already inside dest could redirect the member elsewhere.
            if not folder.resolve().is_relative_to(root):
                raise UnsafeArchiveError(
                    f"{archive}: member {item.name!r} would be written to {folder.resolve()}, "
                    f"outside {dest}, through an existing symlink; remove that link from "
                    f"{dest} (or extract into an empty folder) and run again."
                )
            ready_dirs.add(folder)
        if item.is_dir:
            continue
        tmp = target.with_name(target.name + _TMP_SUFFIX)
        tmp.unlink(missing_ok=True)
        try:
            # "xb" never follows a link planted under the temporary name.
            with open_member(item.member) as src, open(tmp, "xb") as out:
                sink = _CappedWriter(out, budget=remaining, archive=archive, name=item.name)
                shutil.copyfileobj(src, sink, _COPY_CHUNK)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        remaining -= sink.written
        written.append(target)
    return written


__all__ = [
    "ArchiveTooLargeError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "extract_tar",
    "extract_zip",
]
