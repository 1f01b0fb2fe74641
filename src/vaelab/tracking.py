"""MLflow tracking: where the store is, which experiment, and the tags every run carries.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` at the
project's root (MLflow 3 refuses the plain ``./mlruns`` file store for the registry).
The root is the working directory, except inside a DVC experiment executor: queued and
``--temp`` experiments run in a copy of the project under ``<project>/.dvc/tmp/exps/``,
which DVC deletes afterwards, so there the root is the project itself (:func:`project_root`).

Every run (training, registration, the compare report) is tagged with :func:`run_tags`:
the git commit and whether the tree was dirty, and, inside a DVC experiment, the
experiment's name and baseline revision (DVC sets ``DVC_EXP_NAME`` and
``DVC_EXP_BASELINE_REV`` for the stages it runs).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from vaelab.config.data_config import DatasetName

EXPERIMENT = "vaelab"
DEFAULT_DB = "mlflow.db"
# Artifacts of the local stores go to <project>/mlruns/<experiment>/ (git-ignored).
ARTIFACTS_DIR = "mlruns"
# Where DVC puts the copies that queued and --temp experiments run in (dvc.repo.experiments).
EXECUTOR_DIR = (".dvc", "tmp", "exps")

# Run tags (training runs, register runs, the compare run). A training run is tagged
# stage=train, variant, seed and, once its weights are saved, model_md5 = md5 of model.pt:
# the registry finds it by these.
STAGE_TAG = "stage"
TRAIN_STAGE = "train"
VARIANT_TAG = "variant"
SEED_TAG = "seed"
MODEL_MD5_TAG = "model_md5"
COMMIT_TAG = "git_commit"
DIRTY_TAG = "git_dirty"
EXP_NAME_TAG = "dvc_exp_name"
BASELINE_TAG = "dvc_exp_baseline_rev"
# The environment variables DVC sets for every stage of an experiment (dvc.env).
DVC_EXP_NAME = "DVC_EXP_NAME"
DVC_EXP_BASELINE_REV = "DVC_EXP_BASELINE_REV"
DVC_ROOT = "DVC_ROOT"
# Files the pipeline itself writes into git: they do not make the tree dirty.
PIPELINE_WRITES = ("dvc.lock", "metrics", "reports")


# Flattened params that shape no model: how prepare fetches and how many processes it runs.
NOT_SHAPING = ("data.download", "data.workers")
# Keys of a training's history that are not metrics of its run: the epoch is the run's step,
# and the optimiser's step count is a column of the history artifact (a metric named `step`
# would be what the MLflow compare view opens on).
NOT_METRICS = frozenset({"epoch", "step"})


def shaping_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A run's flattened params without what does not shape its variant: the sections of the
    data sets it was not trained on (no ``data.mnist.*`` on an LFW run), the download settings
    and prepare's worker count."""
    dataset = flat.get("data.dataset")
    dropped = (*(f"data.{name}" for name in get_args(DatasetName) if name != dataset), *NOT_SHAPING)
    return {
        key: value
        for key, value in flat.items()
        if not any(key == prefix or key.startswith(prefix + ".") for prefix in dropped)
    }


def project_root(cwd: Path | None = None) -> Path:
    """The project's root: ``cwd``, or the project a DVC experiment executor copied.

    An executor runs in ``<project>/.dvc/tmp/exps/[standalone/]tmpXXXX/``; DVC also sets
    ``DVC_ROOT`` to ``<project>`` there, which wins when it is set.
    """
    here = (cwd or Path.cwd()).absolute()
    parts = here.parts
    width = len(EXECUTOR_DIR)
    for start in range(len(parts) - width + 1):
        if parts[start : start + width] == EXECUTOR_DIR:
            return Path(os.environ.get(DVC_ROOT) or Path(*parts[:start]))
    return here


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the sqlite store at the project's root."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(root or project_root()) / DEFAULT_DB}"
    )


def artifact_location(uri: str, root: Path | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: ``<project>/mlruns/<experiment>`` for a
    local store (MLflow's default is relative to the working directory, which in an
    executor is deleted); None for a server, which decides for itself."""
    if urlsplit(uri).scheme in ("http", "https", "databricks"):
        return None
    return ((root or project_root()) / ARTIFACTS_DIR / EXPERIMENT).as_uri()


# What the MLflow UI (3.x) shows an experiment as: model training, with its runs table, not
# the GenAI overview of traces it falls back on for an experiment of no kind.
KIND_TAG = ("mlflow.experimentKind", "custom_model_development")


def experiment_id(client: Any, uri: str) -> str:
    """The id of the ``vaelab`` experiment in ``client``'s store, created when missing."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        try:
            created: str = client.create_experiment(
                EXPERIMENT, artifact_location=artifact_location(uri), tags=dict([KIND_TAG])
            )
            return created
        except MlflowException as err:
            # Another process (a parallel stage) created it in between: use that one.
            if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        found = client.get_experiment_by_name(EXPERIMENT)
    exp_id: str = found.experiment_id
    if found.tags.get(KIND_TAG[0]) != KIND_TAG[1]:  # a store made before the tag
        client.set_experiment_tag(exp_id, *KIND_TAG)
    return exp_id


def use_experiment(uri: str) -> str:
    """Point MLflow's fluent API at ``uri`` and the ``vaelab`` experiment; its id."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    exp_id = experiment_id(MlflowClient(tracking_uri=uri), uri)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _git(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def git_commit(cwd: Path | None = None) -> str:
    """The commit HEAD names, or ``"unknown"`` outside a git repository."""
    done = _git(["rev-parse", "HEAD"], cwd)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def git_dirty(cwd: Path | None = None) -> bool | None:
    """Whether a tracked file differs from HEAD, leaving out what the pipeline writes into
    git itself (``dvc.lock``, ``metrics/``, ``reports/``); None outside a git repository. An
    untracked file (a tool's leftovers, a notebook) changes no result, so it is no dirt. An
    experiment's executor is dirty: its params differ."""
    excluded = [f":(exclude){path}" for path in PIPELINE_WRITES]
    done = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *excluded], cwd)
    return bool(done.stdout.strip()) if done.returncode == 0 else None


def is_committed(path: Path, cwd: Path | None = None) -> bool | None:
    """Whether ``path`` is in HEAD unchanged (not modified, not untracked); None outside git."""
    if _git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd).returncode != 0:
        inside = _git(["rev-parse", "--is-inside-work-tree"], cwd).returncode == 0
        return False if inside else None  # a repository without commits has nothing committed
    done = _git(["status", "--porcelain", "--", str(path)], cwd)
    return not done.stdout.strip() if done.returncode == 0 else None


@dataclass(frozen=True)
class Provenance:
    """Where a run's code came from: git, and the DVC experiment when there is one."""

    commit: str
    dirty: bool | None
    experiment: str | None  # DVC_EXP_NAME
    baseline_rev: str | None  # DVC_EXP_BASELINE_REV

    def tags(self) -> dict[str, str]:
        """The MLflow tags of this provenance (the DVC ones only when set)."""
        tags = {
            COMMIT_TAG: self.commit,
            DIRTY_TAG: "unknown" if self.dirty is None else str(self.dirty).lower(),
        }
        if self.experiment:
            tags[EXP_NAME_TAG] = self.experiment
        if self.baseline_rev:
            tags[BASELINE_TAG] = self.baseline_rev
        return tags


def provenance(cwd: Path | None = None) -> Provenance:
    """The git state of ``cwd`` (an experiment's executor has its own checkout) and DVC's
    experiment variables."""
    return Provenance(
        commit=git_commit(cwd),
        dirty=git_dirty(cwd),
        experiment=os.environ.get(DVC_EXP_NAME) or None,
        baseline_rev=os.environ.get(DVC_EXP_BASELINE_REV) or None,
    )


def run_tags(cwd: Path | None = None) -> dict[str, str]:
    """The provenance tags every vaelab MLflow run carries."""
    return provenance(cwd).tags()
