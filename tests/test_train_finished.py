"""A train stage with nothing to do (its training finished, its inputs unchanged, its outputs
deleted as DVC deletes them before a run) puts the same bytes back without importing torch,
MLflow or scikit-learn and without touching the MLflow store; anything changed makes it run."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.support.tiny_stage import run_train_stage as _stage
from tests.support.tiny_stage import tiny_trained_project
from vaelab.train.finished import FOLDER, restore

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = (
    "models",
    "metrics/train",
    "metrics/detail/train",
    "metrics/timing/train",
    "metrics/history",
)


def _tree_md5s(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for folder in OUTPUTS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def _imported(importtime: str) -> set[str]:
    """Top-level package names in ``python -X importtime``'s report."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in importtime.splitlines()
        if line.startswith("import time:") and "cumulative" not in line
    }


@pytest.fixture
def trained(tmp_path, tiny_params_dict, make_params):
    return tiny_trained_project(tmp_path, tiny_params_dict, make_params)


def _delete_outputs(root: Path) -> None:
    for folder in OUTPUTS:
        shutil.rmtree(root / folder)


@pytest.mark.slow
def test_a_finished_training_is_put_back_byte_for_byte_without_torch(trained) -> None:
    root, _ = trained
    before, store = _tree_md5s(root), (root / "mlflow.db").read_bytes()
    assert before and (root / "checkpoints" / "vae" / FOLDER).is_dir()
    _delete_outputs(root)
    done = _stage(root, "-X", "importtime")
    assert _tree_md5s(root) == before
    assert (root / "mlflow.db").read_bytes() == store
    assert not _imported(done.stderr) & {"torch", "mlflow", "sklearn", "pandas"}
    assert "restored" in done.stderr


@pytest.mark.slow
def test_a_changed_input_or_kept_file_is_not_restored(trained, make_params, monkeypatch) -> None:
    from tests.conftest import deep_merge

    root, raw = trained
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    _delete_outputs(root)
    # The ex-post GMM is fitted after training: not in the checkpoint's key, in this one.
    assert not restore(make_params(deep_merge(raw, {"train": {"gmm": {"components": 2}}})), "vae")
    assert not (root / "models").exists()
    kept = root / "checkpoints" / "vae" / FOLDER / "metrics.json"
    original = kept.read_bytes()
    kept.write_bytes(original.replace(b"}", b" }"))
    assert not restore(make_params(raw), "vae")
    kept.write_bytes(original)
    assert restore(make_params(raw), "vae")
    assert (root / "models" / "vae" / "seed0" / "model.pt").is_file()
