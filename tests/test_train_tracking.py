"""Training's MLflow tracking: checked before the first step and bounded (a refused port, a
server that never answers), and never in the way of the training once it runs (a server
lost mid-training, a request whose answer is lost)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import deep_merge
from tests.support.http import black_hole
from tests.support.trained import free_port, tracking_server, workspace_fixture
from vaelab.config import params_from_dict
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.train.run import run_train
from vaelab.train.tracker import TrainRun

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 8
# 80 training faces / 16 = 5 steps per epoch: a few milliseconds each.
RAW = {
    "train": {"epochs": EPOCHS, "batch_size": 16, "device": "cpu", "checkpoint_every": 3},
    "models": {"vae": {"arch": "vae_conv", "filters": [4, 8], "z_dim": 4}},
    "registry": {"retries": 2, "backoff": 0.1, "timeout": 2.0},
}

workspace = pytest.fixture(workspace_fixture)


@pytest.fixture
def project(workspace, tiny_params_dict, make_params):
    """The workspace as a project: params.yaml (RAW) and the tiny data set in data/prepared/."""
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(deep_merge(tiny_params_dict, RAW)))
    params = make_params(RAW)
    run_download(params, raw_root=workspace.root / "data" / "raw")
    run_prepare(params, raw_root=workspace.root / "data" / "raw", out_dir=workspace.root / "data" / "prepared",
                metrics_path=workspace.root / "metrics" / "data.json", progress=False)
    return workspace


def train(project, **overrides):
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    return run_train(params_from_dict(deep_merge(params, overrides)), "vae",
                     prepared=project.root / "data" / "prepared", models_root=project.models,
                     metrics_root=project.metrics, progress=False)


def tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def train_stage(argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_stage", REPO / "stages" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


def metric_steps(client, run_id: str) -> dict[str, list[int]]:
    """Every metric of the run with the steps it was logged at, in order (a repeat shows)."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def fails_fast(project, monkeypatch, capsys, uri: str, registry: dict) -> float:
    """Run the train stage against ``uri``; check it exits 2 with one message naming the URI,
    no traceback and nothing written; its seconds."""
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    (project.root / "params.yaml").write_text(yaml.safe_dump({**params, "registry": registry}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    before = tree(project.root)

    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        train_stage(["vae"])
    elapsed = time.monotonic() - started

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("vaelab: error:") == 1 and "Traceback" not in err
    assert f"vaelab: error: cannot reach the MLflow tracking server at {uri}" in err
    assert f"after {registry.get('retries', 3)} attempt(s)" in err and "registry.timeout" in err
    assert tree(project.root) == before  # no checkpoint, model, metrics or store
    return elapsed


def test_a_refused_port_stops_training_before_the_first_step(project, monkeypatch, capsys):
    # The default patience (registry: retries 3, backoff 1 s): MLflow alone took 253 s here.
    elapsed = fails_fast(project, monkeypatch, capsys, f"http://127.0.0.1:{free_port()}", {})
    print(f"refused port: exit 2 after {elapsed:.1f} s")
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"


def test_a_server_that_never_answers_stops_training_in_bounded_time(project, monkeypatch, capsys):
    registry = {"retries": 2, "backoff": 0.1, "timeout": 2.0}
    with black_hole() as hole:
        elapsed = fails_fast(project, monkeypatch, capsys, hole.url, registry)
    print(f"black hole: exit 2 after {elapsed:.1f} s")
    assert hole.accepted == registry["retries"]  # one request per attempt, none retried by MLflow underneath
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"


def test_a_server_lost_mid_training_neither_stops_nor_slows_it(project, monkeypatch, caplog, tmp_path_factory):
    """A real server SIGKILLed after epoch 3, its port taken by a black hole (the worst case:
    every request waits its whole timeout): training finishes, the model is written, one
    warning says the store failed and one what the run lacks, and the store is asked once
    at the failure and once (with retries) at the end, not at every epoch."""
    caplog.set_level(logging.INFO, logger="vaelab")
    server_dir = project.root / "server"
    killed_at, holes = [], []
    original = TrainRun.log_epoch

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(tracking_server(server_dir, tmp_path_factory))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)

        def log_epoch(self, row):
            original(self, row)
            if row["epoch"] == 3:
                server.kill()
                holes.append(stack.enter_context(black_hole(server.port)))
                killed_at.append(time.monotonic())

        monkeypatch.setattr(TrainRun, "log_epoch", log_epoch)
        metrics = train(project)
        after_kill = time.monotonic() - killed_at[0]
        accepted = holes[0].accepted
    print(f"server lost at epoch 3: training ended {after_kill:.1f} s later")

    assert metrics["epochs"] == EPOCHS
    assert (project.models / "vae" / "seed0" / "model.pt").is_file()
    assert (project.root / "checkpoints" / "vae" / "seed0.pt").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("vaelab")]
    assert len(warnings) == 2, warnings
    assert "failed while logging epoch 4 of 8 of vae/seed0" in warnings[0] and "Training goes on" in warnings[0]
    assert "is incomplete: epochs 4-8 of 8 not logged; it is not marked FINISHED" in warnings[1]
    assert "The model is written." in warnings[1] and "python stages/train.py vae" in warnings[1]
    # registry.retries = 2: one quick try at epoch 4, then the end's try and its one retry.
    assert accepted == 1 + RAW["registry"]["retries"], accepted
    # Each try waits registry.timeout (2 s): 3 of them, not one per remaining epoch.
    assert after_kill < 30, f"training took {after_kill:.1f} s after the server was lost"

    with tracking_server(server_dir, tmp_path_factory, port=server.port):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
        # What the server had when it died: the first three epochs, once each; the run was never ended.
        assert run.info.status == "RUNNING"
        steps = metric_steps(client, run.info.run_id)
        assert "train_loss" in steps and all(s == [1, 2, 3] for s in steps.values()), steps


def test_metrics_of_a_failed_request_are_sent_once_at_the_end(project, monkeypatch, caplog):
    """The store takes epoch 2's metrics but its answer is lost: nothing is tried for epochs
    3..8, and the end sends exactly what the run lacks, so the run has every epoch once."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    caplog.set_level(logging.INFO, logger="vaelab")
    calls = []
    original = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), **kwargs):
        original(self, run_id, metrics=metrics, **kwargs)
        if metrics:
            calls.append(sorted({m.step for m in metrics}))
            if len(calls) == 2:
                raise MlflowException("API request failed: connection reset (the answer was lost)")

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    train(project)

    assert calls == [[1], [2], [3, 4, 5, 6, 7, 8]]
    client = project.client()
    (run,) = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["model_md5"]
    steps = metric_steps(client, run.info.run_id)
    assert all(s == list(range(1, EPOCHS + 1)) for s in steps.values()), steps
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("vaelab")]
    assert len(warnings) == 1 and "failed while logging epoch 2 of 8" in warnings[0]
    assert any("answers again" in r.getMessage() for r in caplog.records)
