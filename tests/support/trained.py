"""Tiny trained-looking variants for registry, serving and CLI tests.

``save_variant`` writes ``models/<variant>/`` through the same ``save_replicates`` as
``train`` (one ``seed<k>/`` with state dict and config.json) from an untrained model, so no
test has to train; ``write_eval`` writes ``metrics/detail/eval/<variant>.json`` in the
evaluate stage's nested form, with its ``evaluated_on`` record (a test split's md5 and the
evaluation settings).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from vaelab.config import params_from_dict
from vaelab.config.evaluated_on import EVALUATED_ON, recorded_settings
from vaelab.io.metric_files import metric_files
from vaelab.models import build_model
from vaelab.models.saved import SavedConfig, Trained, save_replicates

IMAGE_SIZE = 16
CHANNELS = 1

# The smallest models the architectures allow at 16x16 grey: building, saving and
# loading them takes milliseconds.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "vae": {"arch": "vae_conv", "filters": [4, 8], "z_dim": 4},
    "ae_pool": {"arch": "ae_pool"},
}

TINY_DATA: dict[str, Any] = {
    "dataset": "lfw",
    "image_size": IMAGE_SIZE,
    "channels": CHANNELS,
    "crop": {"method": "center", "size": None},
}


def tiny_params(
    variants: tuple[str, ...] = ("vae",), registry: dict[str, Any] | None = None
) -> Any:
    """Validated Params with the given tiny variants and a registry section."""
    return params_from_dict(
        {
            "data": TINY_DATA,
            "models": {v: TINY_MODELS[v] for v in variants},
            "registry": {"retries": 2, "backoff": 0.1, "timeout": 2.0, **(registry or {})},
        }
    )


def save_variant(
    models_root: Path,
    variant: str,
    *,
    seed: int = 0,
    channels: int = CHANNELS,
    image_size: int = IMAGE_SIZE,
    seeds: tuple[int, ...] | None = None,
) -> Path:
    """Write ``models_root/<variant>/`` with one replicate, ``seed<seed>/``, whose weights
    come from ``seed`` (a new seed = a new md5), trained on ``image_size`` images (or one
    replicate per seed of ``seeds``); returns the variant folder."""
    params = params_from_dict(
        {
            "data": {**TINY_DATA, "channels": channels, "image_size": image_size},
            "models": {variant: TINY_MODELS[variant]},
        }
    )
    model_cfg = params.models[variant]
    trained = []
    for each in (seed,) if seeds is None else seeds:
        torch.manual_seed(each)
        model = build_model(model_cfg, image_size=image_size, channels=channels)
        config = SavedConfig(
            variant=variant,
            model=model_cfg,
            image_size=image_size,
            channels=channels,
            seed=each,
            train=params.train,
            trainable_params=sum(p.numel() for p in model.parameters()),
            data=params.data,
        )
        trained.append(Trained(model, config))
    folder = models_root / variant
    save_replicates(folder, trained)
    return folder


# The md5 of the test split the evaluations of these tests stand for (the tiny 16x16 data).
TEST_MD5 = "5ca1ab1e" * 4


def evaluated_on(test_md5: str = TEST_MD5, **settings: Any) -> dict[str, Any]:
    """What evaluate records under ``evaluated_on``: the test split's md5 and the default
    evaluation settings, with ``settings`` changed."""
    defaults = recorded_settings(tiny_params().evaluate)
    return {"test_md5": test_md5, "settings": {"seed": 0, **defaults, **settings}}


def write_eval(
    metrics_root: Path,
    variant: str,
    mse: float,
    *,
    psnr: float = 20.0,
    record: dict[str, Any] | None = None,
    seeds: dict[int, float] | None = None,
    **extra: Any,
) -> Path:
    """``metrics/detail/eval/<variant>.json`` (what register reads) with ``recon.mse`` = ``mse``,
    plausible other keys and ``record`` (default :func:`evaluated_on`) as what it was measured
    on; ``seeds``: each replicate's own ``recon.mse`` by seed, for its section ``seeds.<seed>``
    (none without)."""
    own = {
        str(seed): {
            "recon": {"mse": value, "psnr": psnr + seed, "ssim": 0.5},
            "blur": {"laplacian_var": {"input": 0.02, "recon": 0.01 + seed / 1000}},
            "notes": {"collapse": f"seed {seed}'s own words"},
        }
        for seed, value in (seeds or {}).items()
    }
    payload = {
        "recon": {"mse": mse, "psnr": psnr, "ssim": 0.5},
        "blur": {"laplacian_var": {"input": 0.02, "recon": 0.01, "sample": 0.005}},
        "split": "test",  # a non-numeric leaf, which registration ignores
        EVALUATED_ON: evaluated_on() if record is None else record,
        **({"seeds": own} if own else {}),
        **extra,
    }
    path = metric_files(metrics_root, f"eval/{variant}.json").detail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- MLflow workspace

_TEMPLATE_DB: Path | None = None


def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite database, made once per test session.

    Creating one runs MLflow's migrations (seconds); copying the file takes milliseconds.
    """
    global _TEMPLATE_DB
    if _TEMPLATE_DB is None:
        from mlflow import MlflowClient

        path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
        MlflowClient(
            tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}"
        ).search_experiments()
        _TEMPLATE_DB = path
    return _TEMPLATE_DB


@dataclass(frozen=True)
class Workspace:
    """A repository-like folder with its own registry: models/, metrics/, mlflow.db."""

    root: Path
    models: Path
    metrics: Path
    uri: str

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def workspace_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    """Use as ``workspace = pytest.fixture(workspace_fixture)``: cwd = tmp_path, a private
    sqlite registry through MLFLOW_TRACKING_URI, no telemetry, MLflow's globals reset after."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template_db(tmp_path_factory), db)
    uri = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow writes these back into os.environ; deleting them here makes monkeypatch restore them.
    for name in (
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    ):
        monkeypatch.delenv(name, raising=False)
    # Not inside a DVC experiment, whatever ran pytest: tests that want one set these.
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    yield Workspace(
        root=tmp_path, models=tmp_path / "models", metrics=tmp_path / "metrics", uri=uri
    )
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


# --------------------------------------------------------------------------- subprocesses


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment, with the venv's bin first on PATH: ``mlflow models serve`` runs
    ``uvicorn`` by name, which only the venv provides."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


@contextmanager
def running_server(
    command: list[str],
    *,
    ready_url: str,
    log_path: Path,
    env: dict[str, str],
    deadline_s: float = 90.0,
) -> Iterator[subprocess.Popen]:
    """Start ``command`` in its own process group, wait until ``ready_url`` answers 200,
    and stop the whole group (server and workers) on the way out."""
    import requests

    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + deadline_s
            while True:
                if process.poll() is not None:
                    raise AssertionError(
                        f"{command[:3]} exited with {process.returncode}:\n"
                        f"{log_path.read_text()[-4000:]}"
                    )
                try:
                    if requests.get(ready_url, timeout=1.0).status_code == 200:
                        break
                except (requests.ConnectionError, requests.Timeout):
                    # Not listening, or listening but not answering yet: what the loop waits for.
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{ready_url} not up after {deadline_s:g} s:\n"
                        f"{log_path.read_text()[-4000:]}"
                    )
                time.sleep(0.25)
            yield process
        finally:
            _stop_group(process)


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``: what :func:`tracking_server` yields."""

    url: str
    port: int
    process: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, as a crash would, and wait for them."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)


@contextmanager
def tracking_server(
    server_dir: Path, tmp_path_factory: pytest.TempPathFactory, *, port: int | None = None
) -> Iterator[TrackingServer]:
    """A real ``mlflow server`` (one worker) on 127.0.0.1, its store and artifacts in
    ``server_dir``.

    The first start there copies a migrated empty database, so the server starts without
    running MLflow's migrations; a restart in the same folder (and ``port``) serves the same
    store.
    """
    server_dir.mkdir(parents=True, exist_ok=True)
    backend = server_dir / "backend.db"
    fresh = not backend.exists()
    if fresh:
        shutil.copyfile(template_db(tmp_path_factory), backend)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{backend}",
        "--artifacts-destination",
        str(server_dir / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log_path = server_dir / ("server.log" if fresh else "server-restarted.log")
    with running_server(
        command, ready_url=f"{url}/health", log_path=log_path, env=subprocess_env()
    ) as process:
        yield TrackingServer(url, port, process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the group, then SIGKILL to whatever of it is left (uvicorn workers can
    outlive their parent). A group that is already gone raises ProcessLookupError: fine."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


CHAMPION = "models:/vaelab-vae@champion"


def serve(workspace: Any, name: str, model: str = CHAMPION, *, mlflow: bool = True) -> Any:
    """``mlflow models serve`` (or, with ``mlflow`` False, ``vaelab serve``) of ``model`` on a
    free port of 127.0.0.1 over the workspace's store: (context yielding the process, base
    URL); its log is ``<name>.log`` in the workspace."""
    port = free_port()
    if mlflow:
        command = [
            *(sys.executable, "-m", "mlflow", "models", "serve", "-m", model),
            *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
        ]
    else:
        command = [sys.executable, "-m", "vaelab.cli", "serve", "-m", model, "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    server = running_server(
        command,
        ready_url=f"{url}/ping",
        log_path=workspace.root / f"{name}.log",
        env=subprocess_env(MLFLOW_TRACKING_URI=workspace.uri),
    )
    return server, url
