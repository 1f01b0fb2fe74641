"""Obtain one official file from a source: a URL base or a local folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from vaelab.config.data_config import DownloadConfig
from vaelab.data.fetch import DownloadError, check_md5, fetch_url
from vaelab.errors import UserError


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s):// or file:// URL (else a local path)."""
    return urlparse(source).scheme.lower() in ("http", "https", "file")


def obtain(
    name: str,
    md5: str | None,
    *,
    source: str,
    cache: Path,
    verify: bool,
    download: DownloadConfig,
    how_to_supply: str,
) -> Path:
    """Return a local path to the official file ``name``, md5-checked.

    ``source`` is a URL base (the file is fetched into ``cache``, resuming and retrying)
    or a local folder holding the file, or the file itself.
    """
    if is_url(source):
        dest = cache / name
        cache.mkdir(parents=True, exist_ok=True)
        try:
            return fetch_url(
                f"{source.rstrip('/')}/{name}",
                dest,
                md5=md5,
                verify=verify,
                retries=download.retries,
                backoff=download.backoff,
                timeout=download.timeout,
            )
        except DownloadError as err:
            raise DownloadError(f"{err}\n{how_to_supply}") from err
    local = Path(source).expanduser()
    path = local if local.is_file() and local.name == name else local / name
    if not path.is_file():
        raise UserError(f"{name}: not found at {path}.\n{how_to_supply}")
    check_md5(path, md5, verify=verify, label=str(path))
    return path
