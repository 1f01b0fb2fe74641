"""Download data set files robustly: resume, retry with back-off, verify md5, rename atomically.

The body is streamed into ``<dest>.part``; only a complete file whose md5 checks out
is renamed to ``dest``, so a file under its final name is always whole. A ``.part``
left by an interrupted run is resumed with an HTTP ``Range`` request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from vaelab.errors import UserError
from vaelab.io.hashing import md5sum

log = logging.getLogger("vaelab.fetch")

# Indirection so that tests can replace the back-off wait without really sleeping.
_sleep = time.sleep

_CHUNK = 1 << 16
# Statuses that say "try again later" rather than "this request is wrong".
_RETRY_STATUSES = frozenset({408, 429})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)

_HOW_TO_DISABLE = (
    "if you trust this file (e.g. the mirror publishes a new version), "
    "set verify_md5: false for this data set in params.yaml"
)


class DownloadError(UserError):
    """A file could not be downloaded or copied from its source."""


class ChecksumError(UserError):
    """A file's md5 differs from the expected one."""

    def __init__(self, message: str, *, path: Path, expected: str, actual: str) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class _RetryableError(Exception):
    """One attempt failed in a way that another attempt may fix."""


def check_md5(path: Path, expected: str | None, *, verify: bool, label: str) -> str:
    """Compute the md5 of ``path`` and compare it with ``expected``; return the actual md5.

    Raises :class:`ChecksumError` on a mismatch when ``verify`` is true. When ``verify``
    is false and an ``expected`` sum is known, a warning is logged instead.
    """
    actual = md5sum(path)
    if expected is None:
        return actual
    matches = actual == expected.strip().lower()
    if not verify:
        if matches:
            log.warning(
                "md5 check is off (verify_md5: false) for %s; its md5 %s matches anyway",
                label,
                actual,
            )
        else:
            log.warning(
                "md5 check is off (verify_md5: false): %s has md5 %s but %s was expected; "
                "using it anyway",
                label,
                actual,
                expected,
            )
        return actual
    if not matches:
        raise ChecksumError(
            f"md5 mismatch for {label} ({path}): expected {expected}, got {actual}. "
            f"The file is corrupt, incomplete or a different version. Delete {path} and run "
            f"again to fetch it afresh; {_HOW_TO_DISABLE}.",
            path=Path(path),
            expected=expected,
            actual=actual,
        )
    return actual


def fetch_url(
    url: str,
    dest: Path,
    *,
    md5: str | None,
    verify: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    session: requests.Session | None = None,
) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` and return ``dest``.

    An existing ``dest`` whose md5 matches (or any existing ``dest`` when ``md5`` is
    None, or when ``verify`` is false) is reused without a request. HTTP downloads
    resume a leftover ``.part`` with a Range request and are retried ``retries`` more
    times on connection errors, timeouts, truncated bodies, 5xx, 408 and 429, waiting
    ``backoff``, ``2*backoff``, ... seconds in between. Other 4xx fail at once.

    Raises :class:`DownloadError` when the file cannot be fetched and
    :class:`ChecksumError` when it arrives with the wrong md5 (nothing is kept then).
    """
    dest = Path(dest)
    if dest.is_file():
        try:
            check_md5(dest, md5, verify=verify, label=dest.name)
        except ChecksumError as err:
            log.warning(
                "%s exists but its md5 is %s, not %s; downloading it again",
                dest,
                err.actual,
                err.expected,
            )
        else:
            log.info("using cached %s", dest)
            return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / (dest.name + ".part")
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        with ExitStack() as stack:
            if session is None:
                session = stack.enter_context(requests.Session())
            _download_http(
                url,
                part,
                session=session,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                progress=progress,
                label=dest.name,
            )
    elif scheme == "file":
        _copy_local(url, part, progress=progress, label=dest.name)
    else:
        raise DownloadError(
            f"cannot download {url!r} for {dest.name}: unsupported URL scheme {scheme!r}; "
            f"use an http://, https:// or file:// URL"
        )
    _finish(part, dest, url=url, md5=md5, verify=verify)
    return dest


def _finish(part: Path, dest: Path, *, url: str, md5: str | None, verify: bool) -> None:
    """Verify the complete ``part`` and move it to ``dest``; discard it on a bad md5."""
    try:
        check_md5(part, md5, verify=verify, label=dest.name)
    except ChecksumError as err:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"md5 mismatch for {dest.name} downloaded from {url}: expected {err.expected}, "
            f"got {err.actual}; the download was discarded. Run again to retry (the source "
            f"may have been corrupted in transit); {_HOW_TO_DISABLE}.",
            path=dest,
            expected=err.expected,
            actual=err.actual,
        ) from None
    os.replace(part, dest)


def _download_http(
    url: str,
    part: Path,
    *,
    session: requests.Session,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
    label: str,
) -> None:
    """Complete ``part`` from ``url``, retrying with exponential back-off."""
    attempts = retries + 1
    last_error: _RetryableError | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            delay = backoff * 2 ** (attempt - 2)
            log.warning(
                "download of %s failed (%s); attempt %d of %d in %.1f s",
                url,
                last_error,
                attempt,
                attempts,
                delay,
            )
            _sleep(delay)
        try:
            _http_attempt(
                url, part, session=session, timeout=timeout, progress=progress, label=label
            )
        except _RetryableError as err:
            last_error = err
        else:
            return
    raise DownloadError(
        f"could not download {url} for {label} after {attempts} attempt(s); last error: "
        f"{last_error}. Check the network connection and that the URL works in a browser, "
        f"then run again (the partial file {part} will be resumed), or raise "
        f"data.download.retries / data.download.timeout in params.yaml."
    ) from last_error


def _http_attempt(
    url: str,
    part: Path,
    *,
    session: requests.Session,
    timeout: float,
    progress: bool,
    label: str,
) -> None:
    """Make one request and append its body to ``part``; raise _RetryableError if incomplete."""
    offset = part.stat().st_size if part.exists() else 0
    response = _request(url, offset, session=session, timeout=timeout, label=label)
    with response:
        if response.status_code == 416 and offset:
            if not _refused_resume_is_complete(response, part, offset, url=url):
                part.unlink()
                response.close()
                _http_attempt(
                    url, part, session=session, timeout=timeout, progress=progress, label=label
                )
            return
        _check_status(response, url=url, label=label)
        mode, offset = _write_mode(response, part, offset, url=url, label=label)
        _stream_body(response, part, mode=mode, offset=offset, progress=progress, label=label)


def _request(
    url: str, offset: int, *, session: requests.Session, timeout: float, label: str
) -> requests.Response:
    """GET ``url`` from byte ``offset`` on; a lost connection or a timeout is retryable."""
    # Identity encoding: with gzip, Content-Length and Range would count compressed
    # bytes while we count decoded ones.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return session.get(url, headers=headers, stream=True, timeout=timeout)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise _RetryableError(f"{type(err).__name__}: {err}") from err
    except requests.RequestException as err:
        raise DownloadError(
            f"cannot download {url} for {label}: {err}; check the URL in params.yaml"
        ) from err


def _refused_resume_is_complete(
    response: requests.Response, part: Path, offset: int, *, url: str
) -> bool:
    """After a 416 to a resume: whether ``part`` already holds the whole file (else the
    download starts over)."""
    total = _content_range(response.headers.get("Content-Range"))[2]
    if total == offset:
        log.info("%s is already complete (%d bytes)", part, offset)
        return True
    log.warning(
        "server refused to resume %s at byte %d (file size %s); starting over",
        url,
        offset,
        total,
    )
    return False


def _check_status(response: requests.Response, *, url: str, label: str) -> None:
    """Raise _RetryableError on 5xx, 408 and 429, DownloadError on any other 4xx."""
    status = response.status_code
    if status >= 500 or status in _RETRY_STATUSES:
        raise _RetryableError(f"HTTP {status} {response.reason}")
    if status >= 400:
        raise DownloadError(
            f"cannot download {url} for {label}: the server answered HTTP {status} "
            f"{response.reason}. Check the URL (or the source setting for this data set "
            f"in params.yaml); retrying will not help."
        )


def _write_mode(
    response: requests.Response, part: Path, offset: int, *, url: str, label: str
) -> tuple[str, int]:
    """(file mode, offset) for the body: append at ``offset`` to a resumed 206, write a 200
    from the start."""
    status = response.status_code
    if status == 206 and offset:
        start = _content_range(response.headers.get("Content-Range"))[0]
        if start != offset:
            part.unlink()
            raise _RetryableError(
                f"server resumed at byte {start} instead of {offset}; starting over"
            )
        return "ab", offset
    if status == 200:
        if offset:
            log.info("server ignored the resume request for %s; starting over", url)
        return "wb", 0
    raise DownloadError(
        f"cannot download {url} for {label}: unexpected HTTP {status} "
        f"{response.reason}; check the URL in params.yaml"
    )


def _stream_body(
    response: requests.Response,
    part: Path,
    *,
    mode: str,
    offset: int,
    progress: bool,
    label: str,
) -> None:
    """Write the body to ``part`` and check it has the announced length."""
    length = response.headers.get("Content-Length")
    expected_end = offset + int(length) if length and length.isdigit() else None
    written = offset
    with (
        open(part, mode) as handle,
        tqdm(
            total=expected_end,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            # None lets tqdm hide itself when stderr is not a terminal (logs, CI).
            disable=None if progress else True,
            leave=False,
        ) as bar,
    ):
        try:
            for chunk in response.iter_content(chunk_size=_CHUNK):
                handle.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as err:
            raise _RetryableError(
                f"connection lost after {written} bytes: {type(err).__name__}: {err}"
            ) from err
        finally:
            # Whatever arrived is kept for the next attempt to resume from.
            handle.flush()
        os.fsync(handle.fileno())
    if expected_end is not None and written < expected_end:
        raise _RetryableError(f"body truncated at {written} of {expected_end} bytes")
    if expected_end is not None and written > expected_end:
        part.unlink()
        raise _RetryableError(
            f"received {written} bytes but {expected_end} were announced; starting over"
        )


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL``; unknown parts are None."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None, None, None
    start, end, total = match.groups()
    return (
        int(start) if start is not None else None,
        int(end) if end is not None else None,
        int(total) if total not in (None, "*") else None,
    )


def _copy_local(url: str, part: Path, *, progress: bool, label: str) -> None:
    """Copy the file named by a ``file://`` URL to ``part``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(
            f"cannot copy {url} for {label}: file URLs on another host ({parts.netloc}) are "
            f"not supported; use file:///absolute/path"
        )
    source = Path(url2pathname(parts.path))
    if not source.is_file():
        raise DownloadError(
            f"cannot copy {label}: {source} (from {url}) does not exist or is not a file; "
            f"fix the source setting for this data set in params.yaml"
        )
    with (
        open(source, "rb") as src,
        open(part, "wb") as dst,
        tqdm(
            total=source.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=None if progress else True,
            leave=False,
        ) as bar,
    ):
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            bar.update(len(chunk))
        dst.flush()
        os.fsync(dst.fileno())


__all__ = [
    "ChecksumError",
    "DownloadError",
    "check_md5",
    "fetch_url",
]
