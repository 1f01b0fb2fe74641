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
