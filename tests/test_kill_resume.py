"""A training killed with SIGKILL mid-epoch and rerun ends with the same weights (CPU), and
in the same MLflow run, which ends FINISHED with every epoch once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare

REPO = Path(__file__).resolve().parents[1]


def _workspace(root: Path, raw_params: dict, make_params) -> dict[str, str]:
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params))
    params = make_params(raw_params)
    run_download(params, raw_root=root / "data" / "raw")
    run_prepare(
        params,
        raw_root=root / "data" / "raw",
        out_dir=root / "data" / "prepared",
        metrics_path=root / "metrics" / "data.json",
        progress=False,
    )
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
    }


def _train(root: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train.py"), "vae"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stepped(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds a training past its first step (it is replaced by a rename:
    what is opened is one whole version)."""
    return checkpoint.exists() and torch.load(checkpoint, weights_only=True)["step"] > 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(
    tmp_path, tiny_params_dict, make_params
):
    from tests.conftest import deep_merge

    raw = deep_merge(
        tiny_params_dict,
        {
            "train": {"epochs": 12, "batch_size": 16, "device": "cpu", "checkpoint_every": 3},
            "models": {"vae": {"arch": "vae_conv", "filters": [16, 32], "z_dim": 8}},
        },
    )
    reference_env = _workspace(tmp_path / "reference", raw, make_params)
    killed_env = _workspace(tmp_path / "killed", raw, make_params)

    reference = _train(tmp_path / "reference", reference_env)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    # 80 faces / 16 = 5 steps per epoch; checkpoints every 3 steps land mid-epoch (the one
    # saved before the first step keeps the new run's id).
    victim = _train(tmp_path / "killed", killed_env)
    checkpoint = tmp_path / "killed" / "checkpoints" / "vae" / "seed0.pt"
    deadline = time.monotonic() + 120
    while not _stepped(checkpoint) and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.01)
    assert victim.poll() is None, "training finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "models" / "vae").exists()

    rerun = _train(tmp_path / "killed", killed_env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming from" in err

    expected = torch.load(
        tmp_path / "reference" / "models" / "vae" / "seed0" / "model.pt", weights_only=True
    )
    got = torch.load(
        tmp_path / "killed" / "models" / "vae" / "seed0" / "model.pt", weights_only=True
    )
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)

    # One training, one run: the killed run (left RUNNING by SIGKILL) is the one that finished.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=killed_env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id == torch.load(checkpoint, weights_only=True)["run_id"]
    for key in run.data.metrics:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == list(
            range(1, 13)
        ), key
