"""Where the tracking store is (the project's root, also from a DVC experiment's executor)
and the provenance tags every run carries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.trained import template_db
from vaelab.tracking import (
    experiment_id,
    is_committed,
    project_root,
    provenance,
    run_tags,
    tracking_uri,
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "executor", [".dvc/tmp/exps/tmp4_3bvpkv", ".dvc/tmp/exps/standalone/tmpquk3jqar/sub"]
)
def test_an_experiment_executor_resolves_to_the_project_it_copies(tmp_path, clean_env, executor):
    project = tmp_path / "project"
    workdir = project / executor
    workdir.mkdir(parents=True)
    clean_env.chdir(workdir)
    assert project_root() == project
    assert tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    # DVC also names the project in DVC_ROOT for an executor's stages; it wins there.
    clean_env.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))
    assert project_root() == tmp_path / "elsewhere"


def test_outside_an_executor_the_root_is_the_working_directory(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    clean_env.setenv("DVC_ROOT", str(tmp_path / "ignored"))  # a stale variable changes nothing here
    assert project_root() == tmp_path
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert project_root(tmp_path / "a" / ".dvc" / "tmp") == tmp_path / "a" / ".dvc" / "tmp"


def test_an_explicit_tracking_uri_wins_even_in_an_executor(tmp_path, clean_env):
    workdir = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    workdir.mkdir(parents=True)
    clean_env.chdir(workdir)
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"


def test_the_experiment_made_from_an_executor_keeps_its_artifacts_in_the_project(
    tmp_path, clean_env, tmp_path_factory
):
    from mlflow import MlflowClient

    shutil.copyfile(
        template_db(tmp_path_factory), tmp_path / "mlflow.db"
    )  # migrated already: no wait
    workdir = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    workdir.mkdir(parents=True)
    clean_env.chdir(workdir)
    uri = tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    created = experiment_id(client, uri)
    assert experiment_id(client, uri) == created  # found, not made twice
    location = client.get_experiment(created).artifact_location
    assert location == (tmp_path / "mlruns" / "vaelab").as_uri()
    assert not (workdir / "mlflow.db").exists()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_provenance_names_the_commit_the_dirt_and_the_experiment(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    assert run_tags() == {"git_commit": "unknown", "git_dirty": "unknown"}  # no repository
    assert is_committed(Path("params.yaml")) is None

    _git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    assert is_committed(Path("params.yaml")) is False  # no commit yet
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text("{}\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert run_tags() == {"git_commit": head, "git_dirty": "false"}
    assert is_committed(Path("params.yaml")) is True

    # What the pipeline writes into git (metrics/, dvc.lock) is not dirt; a params edit is.
    (tmp_path / "metrics" / "eval.json").write_text('{"mse": 1}\n')
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    assert provenance().dirty is False
    # An untracked file (a tool's leftovers) changes no tracked file: not dirty either.
    (tmp_path / "notes.txt").write_text("scratch\n")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "plot.py").write_text("print(1)\n")
    assert provenance().dirty is False and run_tags()["git_dirty"] == "false"
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert provenance().dirty is True and is_committed(Path("params.yaml")) is False

    clean_env.setenv("DVC_EXP_NAME", "puffy-daks")
    clean_env.setenv("DVC_EXP_BASELINE_REV", head)
    assert run_tags() == {
        "git_commit": head,
        "git_dirty": "true",
        "dvc_exp_name": "puffy-daks",
        "dvc_exp_baseline_rev": head,
    }


def test_a_local_store_that_is_no_database_is_one_message_naming_it(tmp_path):
    from vaelab.config.registry_config import RegistryConfig
    from vaelab.errors import UserError
    from vaelab.tracking_http import connect

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"garbage where the sqlite header should be " * 100)
    with (
        pytest.raises(UserError, match=r"mlflow\.db: not a usable MLflow store \(file is not a "),
        connect(f"sqlite:///{db}", RegistryConfig()),
    ):
        pass


def test_the_experiment_opens_as_model_training_in_the_ui(tmp_path, clean_env, tmp_path_factory):
    """MLflow's UI shows an experiment of no kind as a GenAI overview of traces; vaelab's is
    tagged model training (its runs table), when made and when found without the tag."""
    from mlflow import MlflowClient

    from vaelab.tracking import KIND_TAG

    shutil.copyfile(template_db(tmp_path_factory), tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    made = experiment_id(client, uri)
    assert client.get_experiment(made).tags[KIND_TAG[0]] == "custom_model_development"
    client.delete_experiment_tag(made, KIND_TAG[0])  # a store made before the tag
    assert experiment_id(client, uri) == made
    assert client.get_experiment(made).tags[KIND_TAG[0]] == "custom_model_development"
