"""Tests for vaelab.data.fetch against a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import logging
import random
import socket
from pathlib import Path

import pytest

from tests.support.http import RecordedRequest, serve_directory
from vaelab.data import fetch
from vaelab.data.fetch import ChecksumError, DownloadError, check_md5, fetch_url
from vaelab.io.hashing import md5sum

SIZE = 300_000


@pytest.fixture
def payload() -> bytes:
    return random.Random(1234).randbytes(SIZE)


@pytest.fixture
def served(tmp_path: Path, payload: bytes) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(payload)
    return root


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record back-off waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(fetch, "_sleep", waits.append)
    return waits


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def part_of(dest: Path) -> Path:
    return dest.parent / (dest.name + ".part")


def test_md5sum_and_check_md5(tmp_path: Path) -> None:
    file = tmp_path / "x.bin"
    file.write_bytes(b"hello")
    assert md5sum(file, chunk_size=2) == md5_of(b"hello")
    assert check_md5(file, md5_of(b"hello").upper(), verify=True, label="x") == md5_of(b"hello")
    assert check_md5(file, None, verify=True, label="x") == md5_of(b"hello")
    with pytest.raises(ChecksumError, match="verify_md5: false"):
        check_md5(file, "0" * 32, verify=True, label="x.bin")


def test_download_with_md5(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "out" / "big.bin"
    with serve_directory(served) as server:
        result = fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert result == dest
    assert dest.read_bytes() == payload
    assert not part_of(dest).exists()
    assert server.requests == [RecordedRequest("/big.bin", None)]
    assert sleeps == []


def test_cut_connection_is_resumed_with_range(
    tmp_path: Path, served: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "big.bin"
    kept: list[int] = []

    def note_part_size(delay: float) -> None:
        # Runs between the attempts: how much of the cut body survived in the .part.
        kept.append(part_of(dest).stat().st_size)

    monkeypatch.setattr(fetch, "_sleep", note_part_size)
    with serve_directory(served, cut_after={"big.bin": 200_000}) as server:
        fetch_url(
            f"{server.url}/big.bin",
            dest,
            md5=md5_of(payload),
            retries=3,
            backoff=0.5,
            progress=False,
        )
    assert dest.read_bytes() == payload
    assert len(kept) == 1
    # urllib3 drops the last partial read when it detects the cut, so up to one chunk
    # of what the server sent may be fetched again; the resume must start at the .part size.
    assert 0 < kept[0] <= 200_000
    assert server.requests == [
        RecordedRequest("/big.bin", None),
        RecordedRequest("/big.bin", f"bytes={kept[0]}-"),
    ]


def test_stale_part_is_resumed(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "big.bin"
    part_of(dest).write_bytes(payload[:12345])
    with serve_directory(served) as server:
        fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert server.requests == [RecordedRequest("/big.bin", "bytes=12345-")]
    assert not part_of(dest).exists()


def test_complete_part_is_accepted_on_416(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "big.bin"
    part_of(dest).write_bytes(payload)
    with serve_directory(served) as server:
        fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert server.requests == [RecordedRequest("/big.bin", f"bytes={SIZE}-")]


def test_oversized_part_restarts_from_scratch(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "big.bin"
    part_of(dest).write_bytes(payload + b"junk from another version")
    with serve_directory(served) as server:
        fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert [r.range for r in server.requests] == [f"bytes={SIZE + 25}-", None]


def test_md5_mismatch_raises_and_leaves_nothing(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "big.bin"
    wrong = "0123456789abcdef0123456789abcdef"
    with serve_directory(served) as server, pytest.raises(ChecksumError) as info:
        fetch_url(f"{server.url}/big.bin", dest, md5=wrong, progress=False)
    message = str(info.value)
    assert "big.bin" in message
    assert wrong in message
    assert md5_of(payload) in message
    assert "verify_md5: false" in message
    assert not dest.exists()
    assert not part_of(dest).exists()


def test_verify_off_accepts_wrong_md5_with_warning(
    tmp_path: Path, served: Path, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "big.bin"
    with serve_directory(served) as server, caplog.at_level(logging.WARNING, "vaelab.fetch"):
        fetch_url(f"{server.url}/big.bin", dest, md5="f" * 32, verify=False, progress=False)
    assert dest.read_bytes() == payload
    warnings = [
        r for r in caplog.records if r.name == "vaelab.fetch" and r.levelno == logging.WARNING
    ]
    assert warnings
    assert "verify_md5: false" in warnings[0].getMessage()
    assert md5_of(payload) in warnings[0].getMessage()


def test_404_fails_at_once(tmp_path: Path, served: Path, sleeps: list[float]) -> None:
    dest = tmp_path / "missing.bin"
    with serve_directory(served) as server, pytest.raises(DownloadError) as info:
        fetch_url(f"{server.url}/missing.bin", dest, md5=None, retries=4, progress=False)
    assert "404" in str(info.value)
    assert f"{server.url}/missing.bin" in str(info.value)
    assert len(server.requests) == 1
    assert sleeps == []
    assert not dest.exists()


def test_server_errors_are_retried(
    tmp_path: Path, served: Path, payload: bytes, sleeps: list[float]
) -> None:
    dest = tmp_path / "big.bin"
    with serve_directory(served, fail_with={"big.bin": [503, 429]}) as server:
        fetch_url(
            f"{server.url}/big.bin",
            dest,
            md5=md5_of(payload),
            retries=2,
            backoff=1.0,
            progress=False,
        )
    assert dest.read_bytes() == payload
    assert len(server.requests) == 3
    assert sleeps == [1.0, 2.0]


def test_dead_port_fails_after_retries(tmp_path: Path, sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/big.bin"
    with pytest.raises(DownloadError) as info:
        fetch_url(
            url, tmp_path / "big.bin", md5=None, retries=3, backoff=0.25, timeout=5, progress=False
        )
    message = str(info.value)
    assert url in message
    assert "4 attempt(s)" in message
    assert sleeps == [0.25, 0.5, 1.0]


def test_file_url_copy(tmp_path: Path, payload: bytes) -> None:
    source = tmp_path / "src dir" / "big.bin"
    source.parent.mkdir()
    source.write_bytes(payload)
    dest = tmp_path / "out" / "copy.bin"
    fetch_url(source.as_uri(), dest, md5=md5_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert not part_of(dest).exists()


def test_file_url_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.zip"
    with pytest.raises(DownloadError, match=r"nope\.zip"):
        fetch_url(missing.as_uri(), tmp_path / "x.zip", md5=None, progress=False)


def test_cached_dest_makes_no_request(tmp_path: Path, served: Path, payload: bytes) -> None:
    dest = tmp_path / "big.bin"
    dest.write_bytes(payload)
    with serve_directory(served) as server:
        fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert server.requests == []


def test_cached_dest_with_wrong_md5_is_replaced(
    tmp_path: Path, served: Path, payload: bytes
) -> None:
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"old version")
    with serve_directory(served) as server:
        fetch_url(f"{server.url}/big.bin", dest, md5=md5_of(payload), progress=False)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 1


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="ftp"):
        fetch_url("ftp://example.invalid/x", tmp_path / "x", md5=None, progress=False)
