"""Tests for vaelab.data.archive: refuse unsafe members, cap sizes, select and strip."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from vaelab.data import archive as archive_mod
from vaelab.data.archive import (
    ArchiveTooLargeError,
    CorruptArchiveError,
    UnsafeArchiveError,
    extract_tar,
    extract_zip,
)

BIG = 1 << 30
GOOD = b"a harmless file written before the bad member"


def make_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def tar_member(
    name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def assert_nothing_written(dest: Path) -> None:
    assert not dest.exists() or not any(dest.rglob("*"))


def zip_symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix, so external_attr carries a mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("../evil", "'..'"),
        ("sub/../../evil", "'..'"),
        ("/tmp/evil", "absolute"),
        ("C:/evil", "absolute"),
        ("\\evil", "absolute"),
    ],
)
def test_zip_bad_names_are_refused(tmp_path: Path, bad: str, reason: str) -> None:
    archive = make_zip(tmp_path / "a.zip", [("ok.txt", GOOD), (bad, b"evil")])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError) as info:
        extract_zip(archive, dest, max_bytes=BIG)
    message = str(info.value)
    assert reason in message
    assert bad in message or repr(bad) in message
    assert "a.zip" in message
    assert_nothing_written(dest)
    assert not (tmp_path / "evil").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "a.zip", [("ok.txt", GOOD), (zip_symlink("link"), b"/etc/passwd")]
    )
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_zip(archive, dest, max_bytes=BIG)
    assert_nothing_written(dest)


def test_zip_unsafe_member_refused_even_if_not_selected(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("ok.txt", GOOD), ("../evil", b"evil")])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError):
        extract_zip(archive, dest, max_bytes=BIG, select=lambda name: name == "ok.txt")
    assert_nothing_written(dest)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (tar_member("../evil", b"evil"), "'..'"),
        (tar_member("/tmp/evil", b"evil"), "absolute"),
        (tar_member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "symlink"),
        (tar_member("hard", kind=tarfile.LNKTYPE, linkname="ok.txt"), "hard link"),
        (tar_member("fifo", kind=tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "fifo"],
)
def test_tar_unsafe_members_are_refused(
    tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes], match: str
) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [tar_member("ok.txt", GOOD), bad])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=match) as info:
        extract_tar(archive, dest, max_bytes=BIG)
    assert bad[0].name in str(info.value)
    assert_nothing_written(dest)
    assert not (tmp_path / "evil").exists()


def test_zip_declared_size_cap(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("a.bin", b"x" * 600), ("b.bin", b"y" * 600)])
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveTooLargeError) as info:
        extract_zip(archive, dest, max_bytes=1000)
    assert "b.bin" in str(info.value)
    assert "max_extract_bytes" in str(info.value)
    assert_nothing_written(dest)


def test_tar_declared_size_cap(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar", [tar_member("a.bin", b"x" * 2000)], mode="w")
    with pytest.raises(ArchiveTooLargeError):
        extract_tar(archive, tmp_path / "dest", max_bytes=1999)
    assert_nothing_written(tmp_path / "dest")


def test_unselected_members_do_not_count_against_cap(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("huge.bin", b"x" * 5000), ("small.txt", b"hi")])
    written = extract_zip(
        archive, tmp_path / "dest", max_bytes=10, select=lambda name: name.endswith(".txt")
    )
    assert written == [tmp_path / "dest" / "small.txt"]


def test_actual_bytes_are_capped_when_header_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar(tmp_path / "a.tar", [tar_member("a.bin", b"x" * 5000)], mode="w")
    # Pretend every header declares 0 bytes: only the streaming count can stop it.
    original = archive_mod._plan

    def lying_plan(archive, members, **kwargs):  # type: ignore[no-untyped-def]
        return original(archive, ((m, n, d, 0) for m, n, d, _ in members), **kwargs)

    monkeypatch.setattr(archive_mod, "_plan", lying_plan)
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveTooLargeError, match="more data than its header"):
        extract_tar(archive, dest, max_bytes=4096)
    assert not (dest / "a.bin").exists()
    assert not list(dest.glob("*.vaelab-extract"))


def test_select_and_strip(tmp_path: Path) -> None:
    prefix = "img_align_celeba/img_align_celeba/"
    archive = make_zip(
        tmp_path / "celeba.zip",
        [
            ("img_align_celeba/", b""),
            (prefix, b""),
            (prefix + "000001.jpg", b"one"),
            (prefix + "000002.jpg", b"two"),
            (prefix + "notes.txt", b"skip me"),
            ("img_align_celeba/other.jpg", b"outside the prefix"),
            ("img_align_celebaX/000003.jpg", b"looks like the prefix but is not"),
        ],
    )
    dest = tmp_path / "dest"
    written = extract_zip(
        archive, dest, max_bytes=BIG, select=lambda n: n.endswith(".jpg"), strip=prefix
    )
    assert written == [dest / "000001.jpg", dest / "000002.jpg"]
    assert sorted(p.name for p in dest.iterdir()) == ["000001.jpg", "000002.jpg"]
    assert (dest / "000002.jpg").read_bytes() == b"two"


def test_zip_extracts_byte_identically(tmp_path: Path) -> None:
    files = {
        "top.txt": b"top",
        "dir/a.bin": bytes(range(256)) * 100,
        "dir/sub/b.bin": b"",
        "dir/sub/c.bin": b"c" * 70_000,
    }
    archive = make_zip(tmp_path / "a.zip", [("dir/", b""), *files.items()])
    dest = tmp_path / "dest"
    written = extract_zip(archive, dest, max_bytes=BIG)
    assert written == [dest / name for name in files]
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    assert not list(dest.rglob("*.vaelab-extract"))


def test_tar_gz_extracts_byte_identically(tmp_path: Path) -> None:
    files = {
        "cifar/data_batch_1": bytes(range(256)) * 400,
        "cifar/batches.meta": b"meta",
        "cifar/readme.html": b"<html></html>",
    }
    dir_info = tarfile.TarInfo("cifar")
    dir_info.type = tarfile.DIRTYPE
    archive = make_tar(
        tmp_path / "c.tar.gz", [(dir_info, b""), *(tar_member(n, d) for n, d in files.items())]
    )
    dest = tmp_path / "dest"
    written = extract_tar(archive, dest, max_bytes=BIG, strip="cifar")
    assert written == [dest / Path(name).name for name in files]
    for name, data in files.items():
        assert (dest / Path(name).name).read_bytes() == data


def test_existing_files_are_overwritten(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", [("x.txt", b"new")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x.txt").write_bytes(b"old")
    extract_zip(archive, dest, max_bytes=BIG)
    assert (dest / "x.txt").read_bytes() == b"new"


def test_symlink_inside_dest_cannot_redirect(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    archive = make_zip(tmp_path / "a.zip", [("sub/x.txt", b"x")])
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_zip(archive, dest, max_bytes=BIG)
    assert not (outside / "x.txt").exists()


def test_corrupt_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(CorruptArchiveError, match=r"bad\.zip"):
        extract_zip(bad, tmp_path / "dest", max_bytes=BIG)
    with pytest.raises(CorruptArchiveError, match=r"bad\.zip"):
        extract_tar(bad, tmp_path / "dest", max_bytes=BIG)
    with pytest.raises(CorruptArchiveError, match="does not exist"):
        extract_zip(tmp_path / "missing.zip", tmp_path / "dest", max_bytes=BIG)
