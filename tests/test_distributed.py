"""DDP through torchrun: 2 gloo processes on CPU train one variant; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.project import copy_project, run, small_pipeline
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path, tiny_params_dict, make_params):
    from tests.conftest import deep_merge

    raw = deep_merge(
        tiny_params_dict,
        {
            "train": {"epochs": 2, "batch_size": 16, "device": "cpu"},
            "models": {"tiny": {"arch": "ae_pool"}},
        },
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = make_params(raw)
    run_download(params, raw_root=tmp_path / "data" / "raw")
    run_prepare(
        params,
        raw_root=tmp_path / "data" / "raw",
        out_dir=tmp_path / "data" / "prepared",
        metrics_path=tmp_path / "metrics" / "data.json",
        progress=False,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(REPO / "stages" / "train.py"),
            "tiny",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics" / "detail" / "train" / "tiny.json").read_text())
    # 80 training faces shared by 2 ranks: 40 each, batches of 16 → 3 steps per epoch.
    assert metrics["steps"] == 2 * 3 and metrics["epochs"] == 2
    history = pd.read_csv(tmp_path / "metrics" / "history" / "tiny.csv")
    assert history["train_loss"].notna().all() and (history["train_loss"] > 0).all()
    assert (tmp_path / "models" / "tiny" / "seed0" / "model.pt").is_file()
    # Exactly one MLflow run: rank 1 wrote nothing.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("vaelab")
    assert len(client.search_runs([experiment.experiment_id])) == 1


@pytest.mark.slow
def test_train_processes_relaunches_the_stage_under_torchrun_from_dvc_repro(tmp_path):
    """`train.processes: 2` in params.yaml: a plain `dvc repro` trains with 2 gloo ranks, writes
    one model, one MLflow run and a lock that `dvc status` then finds up to date."""
    project = copy_project(tmp_path / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params = small_pipeline(params, epochs=2, seeds=1, device="cpu", processes=2, threads=1)
    params["models"] = {"small_ae": params["models"]["small_ae"]}
    params["evaluate"]["chain"] = None
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    done = run([sys.executable, "-m", "dvc", "repro", "train@small_ae"], project)
    assert "train.processes: 2 ranks under torchrun: -m torch.distributed.run" in done.stderr
    detail = json.loads((project / "metrics" / "detail" / "train" / "small_ae.json").read_text())
    training_images = detail["images"]["train"] if "images" in detail else None
    assert detail["epochs"] == 2
    if training_images is not None:
        # Each rank steps over half of every epoch: half the steps of one process.
        assert detail["steps"] == 2 * -(-training_images // 2 // 32)
    assert (project / "models" / "small_ae" / "seed0" / "model.pt").is_file()
    status = run([sys.executable, "-m", "dvc", "status", "train@small_ae"], project)
    assert "changed" not in status.stdout and "modified" not in status.stdout, status.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vaelab")
    (only,) = client.search_runs([experiment.experiment_id])  # rank 1 logged nothing
    assert only.data.params["train.processes"] == "2"


def test_one_process_or_a_rank_trains_in_place(monkeypatch, make_params):
    from vaelab.train.launch import relaunch, relaunch_command, wanted_processes

    assert relaunch(make_params(), Path("stages/train.py"), ["vae"]) is None  # processes: 1
    two = make_params({"train": {"processes": 2}})
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert relaunch(two, Path("stages/train.py"), ["vae"]) is None  # already a rank
    assert wanted_processes(make_params({"train": {"processes": "auto", "device": "cpu"}})) == 1
    assert relaunch_command(2, Path("s.py"), ["vae"])[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "s.py", "vae",
    ]  # fmt: skip
