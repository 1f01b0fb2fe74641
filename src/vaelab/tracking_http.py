"""Reach the MLflow tracking server and registry, with bounded retries.

Every stage and command that talks to MLflow (``train``, ``register``, ``vaelab promote``,
the CLI's model loads) goes through here, with one setting for the whole pipeline:
``registry.retries``, ``registry.backoff`` and ``registry.timeout``.

The default is the embedded ``sqlite:///mlflow.db``, which needs no network. For an
``http(s)://`` tracking server, :func:`connect` first asks it for one experiment,
``registry.retries`` times with exponential waits starting at ``registry.backoff``,
and raises a :class:`UserError` naming the URI if it never answers. While connected,
MLflow's own HTTP retries and timeout (``MLFLOW_HTTP_REQUEST_*``) are bounded by the same
settings, whatever the environment says: left alone MLflow retries 7 times with a 120 s
timeout, so a server that dies mid-stage could hang the stage for many minutes.
:func:`one_try` bounds a request to a single attempt, for callers that do their own
retrying (or none).

The local sqlite store is opened with the same patience (:func:`open_local_store`): a store
another process holds locked (a write in progress) is tried ``registry.retries`` times, and one
locked beyond that, or beyond MLflow's own 20 s wait for a write later on, is one
:class:`UserError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from vaelab.config.registry_config import RegistryConfig
from vaelab.errors import UserError, causes

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("vaelab.tracking")

REMOTE_SCHEMES = ("http", "https")

# The names MLflow 3 reads in mlflow/environment_variables.py (all integers but the jitter).
_MAX_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_BACKOFF_FACTOR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
_BACKOFF_JITTER = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# MLflow refuses more retries than this (its _MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT).
_MLFLOW_RETRY_LIMIT = 10


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (http or https), not a local store."""
    return urlsplit(uri).scheme in REMOTE_SCHEMES


def display_uri(uri: str) -> str:
    """``uri`` without a password, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def quiet_mlflow_env() -> None:
    """No telemetry, no artifact progress bars in stage logs; an explicit user setting wins."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextmanager
def mlflow_http_limits(*, max_retries: int, backoff: float, timeout: float) -> Iterator[None]:
    """Set MLflow's HTTP retry/timeout variables for the block, then restore them.

    MLflow reads them on every request, so the change applies at once. It takes whole
    seconds, so the timeout and backoff factor are rounded up.
    """
    settings = {
        _MAX_RETRIES: str(min(max_retries, _MLFLOW_RETRY_LIMIT)),
        _BACKOFF_FACTOR: str(math.ceil(backoff)),
        _BACKOFF_JITTER: "0",
        _TIMEOUT: str(max(1, math.ceil(timeout))),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def bounded_mlflow_http(cfg: RegistryConfig) -> Iterator[None]:
    """MLflow's own HTTP retries bounded by ``registry.retries / backoff / timeout``."""
    with mlflow_http_limits(max_retries=cfg.retries - 1, backoff=cfg.backoff, timeout=cfg.timeout):
        yield


@contextmanager
def one_try(cfg: RegistryConfig) -> Iterator[None]:
    """One HTTP attempt per MLflow request, waiting at most ``registry.timeout`` for it."""
    with mlflow_http_limits(max_retries=0, backoff=0.0, timeout=cfg.timeout):
        yield


def wait_for_server(
    client: MlflowClient,
    uri: str,
    cfg: RegistryConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Ask the server for one experiment until it answers; UserError after ``cfg.retries`` tries."""
    from mlflow.exceptions import MlflowException, RestException

    shown = display_uri(uri)
    last_error = "no attempt made"
    # Our loop does the retrying here, so MLflow must not retry underneath it.
    with one_try(cfg):
        for attempt in range(1, cfg.retries + 1):
            try:
                client.search_experiments(max_results=1)
                return
            except RestException as err:
                # The server answered with an MLflow error (permissions, say): retrying won't help.
                raise UserError(
                    f"MLflow tracking server {shown} refused the request: {err.message}"
                ) from err
            except MlflowException as err:
                last_error = err.message
                if attempt < cfg.retries:
                    wait = cfg.backoff * 2 ** (attempt - 1)
                    log.warning(
                        "MLflow tracking server %s not reachable (attempt %d of %d), "
                        "retrying in %.1f s: %s",
                        shown,
                        attempt,
                        cfg.retries,
                        wait,
                        last_error,
                    )
                    sleep(wait)
    raise UserError(
        f"cannot reach the MLflow tracking server at {shown} (MLFLOW_TRACKING_URI) after "
        f"{cfg.retries} attempt(s), {cfg.timeout:g} s timeout each: {last_error}. Start the "
        "server, or unset MLFLOW_TRACKING_URI to use the local sqlite:///mlflow.db; "
        "registry.retries, registry.backoff and registry.timeout in params.yaml set the patience"
    )


def _sqlite_error(error: BaseException) -> str | None:
    """The sqlite error text behind ``error`` (MLflow and SQLAlchemy wrap it), if any."""
    for cause in causes(error):
        if type(cause).__module__ == "sqlite3" or "sqlite3." in str(cause):
            text = str(cause)
            return text.split("(sqlite3.", 1)[-1].split(")", 1)[-1].strip().splitlines()[0]
    return None


def _locked(reason: str | None) -> bool:
    """sqlite's "database is locked" (another connection holds the file) or "database table
    is locked": the store is sound, only busy."""
    return reason is not None and "is locked" in reason


def _locked_store(path: str, reason: str, waited: str) -> UserError:
    return UserError(
        f"{path}: the MLflow store is locked by another process ({reason}), {waited}; let the "
        "other writer (another `dvc repro` or stage, `mlflow ui` or `mlflow server` on this "
        f"file) finish, or find it with `fuser {path}`, and rerun; registry.retries and "
        "registry.backoff in params.yaml set how long vaelab waits"
    )


def open_local_store(
    uri: str, cfg: RegistryConfig, *, sleep: Callable[[float], None] = time.sleep
) -> MlflowClient:
    """A client of the local sqlite store, opened and asked once (tracking and registry).

    A file that is no sqlite store is one UserError naming it and what to do (SQLAlchemy's
    DatabaseError else). A store another process holds locked is tried again,
    ``cfg.retries`` attempts with exponential waits from ``cfg.backoff``: opening it reads it
    outside MLflow's sessions, where sqlite waits 5 s for a lock (inside them MLflow sets 20 s),
    so a write of a few seconds elsewhere failed the stage with ``database is locked``.
    """
    from mlflow import MlflowClient

    path = uri.removeprefix("sqlite:///")
    for attempt in range(1, cfg.retries + 1):
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
            return client
        except Exception as err:  # only sqlite's own errors are ours; any other is re-raised
            reason = _sqlite_error(err)
            if reason is None:
                raise
            if not _locked(reason):
                raise UserError(
                    f"{path}: not a usable MLflow store ({reason}); move it aside (mv {path} "
                    f"{path}.bad) and rerun: a new store is made, and `register` logs every "
                    "variant into it again"
                ) from err
            if attempt == cfg.retries:
                raise _locked_store(path, reason, f"still after {attempt} attempt(s)") from err
            wait = cfg.backoff * 2 ** (attempt - 1)
            log.warning(
                "%s is locked by another process (attempt %d of %d), retrying in %.1f s",
                path,
                attempt,
                cfg.retries,
                wait,
            )
            sleep(wait)
    raise ValueError(f"registry.retries must be at least 1, got {cfg.retries}")


@contextmanager
def connect(uri: str, cfg: RegistryConfig) -> Iterator[MlflowClient]:
    """A client for ``uri`` as tracking and registry URI, with MLflow's HTTP retries bounded.

    Also makes ``uri`` the process's URI for MLflow's fluent API (``start_run``,
    ``log_model``), as a stage or command is one process. Raises UserError, before
    anything is written, when a remote server does not answer, the local sqlite file is no
    store, or another process keeps it locked through ``cfg``'s retries; and when a lock
    taken later outlasts MLflow's wait for a write.
    """
    quiet_mlflow_env()
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    local = uri.startswith("sqlite:///")
    if local:
        client = open_local_store(uri, cfg)
    else:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if is_remote(uri):
        wait_for_server(client, uri, cfg)
    with bounded_mlflow_http(cfg):
        try:
            yield client
        except Exception as err:  # a lock that outlasted MLflow's own wait; others re-raised
            reason = _sqlite_error(err) if local and not isinstance(err, UserError) else None
            if reason is None or not _locked(reason):
                raise
            raise _locked_store(
                uri.removeprefix("sqlite:///"),
                reason,
                "for longer than MLflow waits for one write (20 s)",
            ) from err
