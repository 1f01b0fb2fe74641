"""MLflow tracking: one run per variant per training, offline by default.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` at the
repository root (MLflow 3 refuses the plain ``./mlruns`` file store for the registry).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "vaelab"
DEFAULT_DB = "mlflow.db"


def tracking_uri(root: Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or Path.cwd()) / DEFAULT_DB}"


def flatten(payload: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} → {"train.lr": 1e-3}; lists become their string form."""
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def git_commit(cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@contextmanager
def mlflow_run(run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[Any]:
    """Start an MLflow run with flattened ``params`` and ``tags``; yields the mlflow module."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(flatten(params))
        mlflow.set_tags(dict(tags))
        yield run
