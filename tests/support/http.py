"""Throwaway servers on 127.0.0.1: an HTTP server for download tests, and a black hole.

``serve_directory`` serves the files under a folder, understands ``Range: bytes=N-``
(and ``N-M``), can cut the first response for chosen files short, can answer error
statuses before serving, and records every request it gets. ``black_hole`` accepts
connections and never answers: a hung service.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class RecordedRequest(NamedTuple):
    """One request the server received: URL path and the Range header (or None)."""

    path: str
    range: str | None


@dataclass
class ServedDirectory:
    """What :func:`serve_directory` yields."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)


@dataclass
class _Behaviour:
    root: Path
    cut_after: dict[str, int]
    fail_with: dict[str, list[int]]
    served: ServedDirectory
    lock: threading.Lock = field(default_factory=threading.Lock)
    cut_done: set[str] = field(default_factory=set)

    def _key(self, table: Mapping[str, object], rel: str) -> str | None:
        for key in (rel, rel.rsplit("/", 1)[-1]):
            if key in table:
                return key
        return None

    def take_cut(self, rel: str) -> int | None:
        """Bytes to send before cutting this response, or None for a full response."""
        with self.lock:
            key = self._key(self.cut_after, rel)
            if key is None or key in self.cut_done:
                return None
            self.cut_done.add(key)
            return self.cut_after[key]

    def take_failure(self, rel: str) -> int | None:
        """The next error status queued for this file, if any."""
        with self.lock:
            key = self._key(self.fail_with, rel)
            if key is None or not self.fail_with[key]:
                return None
            return self.fail_with[key].pop(0)


def _make_handler(behaviour: _Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a cut is simply a closed socket.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet; requests are recorded instead."""

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            url_path = urlsplit(self.path).path
            behaviour.served.requests.append(RecordedRequest(url_path, range_header))
            rel = unquote(url_path).lstrip("/")

            failure = behaviour.take_failure(rel)
            if failure is not None:
                self._send_empty(failure)
                return
            root = behaviour.root.resolve()
            file = (root / rel).resolve()
            if not file.is_relative_to(root) or not file.is_file():
                self._send_empty(404)
                return

            data = file.read_bytes()
            size = len(data)
            status, start, end = 200, 0, size
            match = _RANGE.fullmatch(range_header.strip()) if range_header else None
            if match:
                start = int(match.group(1))
                if start >= size:
                    self._send_empty(416, {"Content-Range": f"bytes */{size}"})
                    return
                end = min(int(match.group(2)) + 1, size) if match.group(2) else size
                status = 206

            body = data[start:end]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            cut = behaviour.take_cut(rel)
            # The client may hang up (as download code may do on purpose); nothing to serve then.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body if cut is None else body[:cut])
            self.close_connection = True

        def _send_empty(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def serve_directory(
    root: Path,
    *,
    cut_after: dict[str, int] | None = None,
    fail_with: dict[str, list[int]] | None = None,
) -> Iterator[ServedDirectory]:
    """Serve the files under ``root`` over HTTP on 127.0.0.1 for the duration of the block.

    ``cut_after`` maps a file name (or path relative to ``root``) to N: the first
    response for that file announces its full Content-Length but sends only N bytes
    of body, then closes the connection. ``fail_with`` maps a file name to a list of
    statuses answered (one per request, in order) before the file is served.
    Yields a :class:`ServedDirectory` with ``url`` (no trailing slash) and
    ``requests`` (a list of :class:`RecordedRequest`, in arrival order).
    """
    served = ServedDirectory(url="")
    behaviour = _Behaviour(
        root=Path(root),
        cut_after=dict(cut_after or {}),
        fail_with={name: list(codes) for name, codes in (fail_with or {}).items()},
        served=served,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(behaviour))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    served.url = f"http://{host}:{port}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="test-http-server",
        daemon=True,
    )
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class BlackHole:
    """What :func:`black_hole` yields: its URL, and how many connections it has accepted."""

    url: str
    accepted: int = 0


@contextmanager
def black_hole(port: int = 0, *, bind_deadline_s: float = 10.0) -> Iterator[BlackHole]:
    """A TCP server on 127.0.0.1 that accepts every connection, reads nothing and never
    answers, for the duration of the block. ``port`` 0 picks a free one; a port that a
    server killed a moment ago still holds is retried until ``bind_deadline_s``."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + bind_deadline_s
    while True:
        try:
            listener.bind(("127.0.0.1", port))
            break
        except OSError:
            if time.monotonic() > deadline:
                listener.close()
                raise
            time.sleep(0.1)
    listener.listen(64)
    listener.settimeout(0.1)
    hole = BlackHole(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _address = listener.accept()
            except TimeoutError:
                continue  # no one knocked in this slice: look at `stop` again
            held.append(connection)
            hole.accepted += 1

    thread = threading.Thread(target=accept, name="test-black-hole", daemon=True)
    thread.start()
    try:
        yield hole
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()
