"""Outputs are written under a temporary name and renamed, with the usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from vaelab.io.atomic import atomic_directory, atomic_file, write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_get_umask_permissions_not_owner_only(tmp_path, umask_022):
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "f.txt").write_text("hi")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_a_failure_leaves_neither_a_half_file_nor_the_staging_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "keep.txt") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "dir") as staging:
            (staging / "part").write_text("x")
            raise RuntimeError("killed")
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
