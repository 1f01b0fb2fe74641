"""Outputs are written under a temporary name and renamed, with the usual permissions."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.io.json_files import write_json


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
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "keep.txt") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "dir") as staging:
        (staging / "part").write_text("x")
        raise RuntimeError("killed")
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _exited_pid() -> int:
    """The id of a process that has run and exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_write_removes_the_leftovers_of_dead_writers_of_the_same_output_only(tmp_path):
    dead = _exited_pid()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            leftovers = [
                tmp_path / f".out.json.tmp-{dead}-abc",
                tmp_path / f".out.json.old-{dead}-def",
            ]
            leftovers[0].write_text("half")
            leftovers[1].mkdir()
            (leftovers[1] / "out.json").write_text("old")
            kept = [
                tmp_path / f".out.json.tmp-{live.pid}-ghi",  # a writer still running
                tmp_path / f".other.json.tmp-{dead}-jkl",  # another output's
                tmp_path / ".out.json.tmp-xyz",  # no process id: not ours to judge
                tmp_path / "notes.txt",
            ]
            for path in kept:
                path.write_text("keep")
            write_json(tmp_path / "out.json", {"a": 1})
            assert [p for p in leftovers if p.exists()] == []
            assert all(p.exists() for p in kept)
            assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}
        finally:
            live.kill()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory, atomic_file
dest = Path(sys.argv[1])
with atomic_file(dest / "model.pt", "wb") as handle, atomic_directory(dest / "figures") as staging:
    handle.write(b"half a model")
    (staging / "a.png").write_bytes(b"half a figure")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_nothing_after_the_next_write(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [
        ".figures.tmp",
        ".model.pt.tmp",
    ]
    with atomic_file(tmp_path / "model.pt", "wb") as handle:
        handle.write(b"a model")
    with atomic_directory(tmp_path / "figures") as staging:
        (staging / "a.png").write_bytes(b"a figure")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "model.pt"]


ORPHANED_STAGE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
child.wait()
"""
STAGE = """
import sys, time
from pathlib import Path
from vaelab.io.atomic import atomic_file
from vaelab.lifetime import exit_with_parent
assert exit_with_parent()
with atomic_file(Path(sys.argv[1]) / "model.pt", "wb") as handle:
    print("training", flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_stage_exits_when_its_parent_is_killed_and_cleans_up(tmp_path):
    # parent (as dvc) -> stage; kill -9 the parent alone, as a user killing dvc would.
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANED_STAGE, STAGE, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "training"
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [".model.pt.tmp"]
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _running(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child_pid), "the stage kept running after its parent was killed"
    # SIGTERM became SystemExit: the atomic write removed its own temporary on the way out.
    assert list(tmp_path.iterdir()) == []


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_message_naming_the_output(tmp_path, monkeypatch):
    """torch.save on a full disk raises "RuntimeError: [enforce fail at inline_container.cc]
    . unexpected pos", the ENOSPC only in its cause: one UserError naming the file and what to
    do, and no temporary left."""
    import torch

    dest = tmp_path / "checkpoint.pt"

    def save_on_a_full_disk(obj, handle):
        try:
            handle.write(b"PK")
            _full()
        except OSError as error:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos"
            ) from error

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with (
        pytest.raises(UserError, match=r"checkpoint\.pt: no space left on the device") as caught,
        atomic_file(dest, "wb") as handle,
    ):
        torch.save({}, handle)
    assert "free some space and rerun" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_syncing_or_staging_a_folder_is_the_same_message(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _full)
    with (
        pytest.raises(UserError, match=r"metrics\.json: no space left"),
        atomic_file(tmp_path / "metrics.json") as handle,
    ):
        handle.write("{}")
    monkeypatch.undo()
    with (
        pytest.raises(UserError, match=r"model: no space left"),
        atomic_directory(tmp_path / "model") as staging,
    ):
        (staging / "a").write_text("x")
        _full()
    assert list(tmp_path.iterdir()) == []
    # Any other error passes through unchanged.
    with pytest.raises(ValueError, match="not a disk"), atomic_file(tmp_path / "other.json"):
        raise ValueError("not a disk")
