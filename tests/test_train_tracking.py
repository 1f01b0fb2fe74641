"""Training's MLflow tracking: checked before the first step and bounded (a refused port, a
server that never answers), never in the way of the training once it runs (a server lost
mid-training, a request whose answer is lost), and one run per training however often it is
resumed (killed, complete, from a checkpoint without a run id)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import deep_merge
from tests.support.http import black_hole
from tests.support.trained import free_port, tracking_server, workspace_fixture
from vaelab.config import params_from_dict
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.models.saved import weights_md5
from vaelab.train.batches import Batches
from vaelab.train.mlflow_logger import TrainRun
from vaelab.train.train import run_train

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 8
# 80 training faces / 16 = 5 steps per epoch: a few milliseconds each.
RAW = {
    "train": {"epochs": EPOCHS, "batch_size": 16, "device": "cpu", "checkpoint_every": 3},
    "models": {"vae": {"arch": "vae_conv", "filters": [4, 8], "z_dim": 4}},
    "registry": {"retries": 2, "backoff": 0.1, "timeout": 2.0},
}

workspace = pytest.fixture(workspace_fixture)


@pytest.fixture(autouse=True)
def _every_epoch_sent(monkeypatch):
    """These tests pin which epoch each request carries: one send per epoch (SEND_EVERY 0),
    except where a test sets its own interval."""
    from vaelab.train import mlflow_logger as tracker

    monkeypatch.setattr(tracker, "SEND_EVERY", 0.0)


@pytest.fixture
def project(workspace, tiny_params_dict, make_params):
    """The workspace as a project: params.yaml (RAW) and the tiny data set in data/prepared/."""
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(deep_merge(tiny_params_dict, RAW)))
    params = make_params(RAW)
    run_download(params, raw_root=workspace.root / "data" / "raw")
    run_prepare(
        params,
        raw_root=workspace.root / "data" / "raw",
        out_dir=workspace.root / "data" / "prepared",
        metrics_path=workspace.root / "metrics" / "data.json",
        progress=False,
    )
    return workspace


def train(project):
    """Train the project's ``vae`` in this process, as params.yaml says."""
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    return run_train(
        params_from_dict(params),
        "vae",
        prepared=project.root / "data" / "prepared",
        models_root=project.models,
        metrics_root=project.metrics,
        progress=False,
    )


def tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def train_stage(argv: list[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_stage", REPO / "stages" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)


# Params of the LFW runs here that shape nothing of theirs.
OTHER_DATA = ("data.celeba.", "data.mnist.", "data.cifar10.", "data.download.", "data.workers")


def metric_steps(client, run_id: str) -> dict[str, list[int]]:
    """Every metric of the run with the steps it was logged at, in order (a repeat shows)."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def train_runs(client) -> list:
    """The training runs of the store, oldest first."""
    return client.search_runs(
        [client.get_experiment_by_name("vaelab").experiment_id],
        filter_string="tags.stage = 'train'",
        order_by=["attributes.start_time ASC"],
    )


def assert_complete(client, run, project) -> None:
    """``run`` ended FINISHED with every epoch of every metric once, tagged with the weights'
    md5, its params those of its model, training and data set only."""
    assert run.info.status == "FINISHED"
    steps = metric_steps(client, run.info.run_id)
    # The loss curves, and no metric named after the step (MLflow's compare view opens on it).
    assert {"train_loss", "val_loss"} <= set(steps) and not {"step", "epoch"} & set(steps)
    params = client.get_run(run.info.run_id).data.params
    assert params["data.dataset"] == "lfw" and params["model.arch"] == "vae_conv"
    assert "train.epochs" in params and any(key.startswith("data.lfw.") for key in params)
    assert not [key for key in params if key.startswith(OTHER_DATA)], sorted(params)
    assert all(s == list(range(1, EPOCHS + 1)) for s in steps.values()), steps
    assert run.data.tags["model_md5"] == weights_md5(project.models / "vae" / "seed0")


def checkpoint_file(project) -> Path:
    return project.root / "checkpoints" / "vae" / "seed0.pt"


def checkpoint_run_id(project) -> str | None:
    return torch.load(checkpoint_file(project), weights_only=True).get("run_id")


def interrupt_at(monkeypatch, epoch: int) -> None:
    """Ctrl-C at the end of ``epoch``: after its checkpoint, before its metrics are sent."""
    original = TrainRun.log_epoch

    def log_epoch(self, row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt
        original(self, row)

    monkeypatch.setattr(TrainRun, "log_epoch", log_epoch)


def messages(caplog, level: int = logging.INFO) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("vaelab")
    ]


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
    assert (
        hole.accepted == registry["retries"]
    )  # one request per attempt, none retried by MLflow underneath
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"


def test_a_server_lost_mid_training_neither_stops_nor_slows_it(
    project, monkeypatch, caplog, tmp_path_factory
):
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
    assert checkpoint_file(project).is_file()
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert (
        "failed while logging epoch 4 of 8 of vae/seed0" in warnings[0]
        and "Training goes on" in warnings[0]
    )
    assert "is incomplete: epochs 4-8 of 8 not sent; it is not marked FINISHED" in warnings[1]
    assert "The model is written." in warnings[1] and "python stages/train.py vae" in warnings[1]
    # registry.retries = 2: one quick try at epoch 4, then the end's try and its one retry.
    assert accepted == 1 + RAW["registry"]["retries"], accepted
    # Each try waits registry.timeout (2 s): 3 of them (about 7 s), not one per remaining epoch.
    assert after_kill < 45, f"training took {after_kill:.1f} s after the server was lost"

    with tracking_server(server_dir, tmp_path_factory, port=server.port):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.url)
        (run,) = train_runs(client)
        # What the server had when it died: the first three epochs, once each; the run was
        # never ended.
        assert run.info.status == "RUNNING" and checkpoint_run_id(project) == run.info.run_id
        steps = metric_steps(client, run.info.run_id)
        assert "train_loss" in steps and all(s == [1, 2, 3] for s in steps.values()), steps

        # The rerun, with the server back: nothing is trained, the run gets what it lacks.
        caplog.clear()
        saved = checkpoint_file(project).read_bytes()
        train(project)
        assert any("the training is complete in" in m for m in messages(caplog))
        assert checkpoint_file(project).read_bytes() == saved
        (done,) = train_runs(client)
        assert done.info.run_id == run.info.run_id
        assert_complete(client, done, project)


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
    (run,) = train_runs(client)
    assert_complete(client, run, project)
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and "failed while logging epoch 2 of 8" in warnings[0]
    assert any("answers again" in m for m in messages(caplog))


def test_a_killed_training_resumes_its_own_run_which_ends_with_every_epoch_once(
    project, monkeypatch, caplog
):
    """Before: the killed run stayed as it was and the resumed training logged epochs 4..8
    to a new run. Now the checkpoint keeps the run id, and the rerun continues that run,
    sending first the epoch the kill kept from it."""
    caplog.set_level(logging.INFO, logger="vaelab")
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        interrupt_at(patched, 3)
        train(project)
    client = project.client()
    (killed,) = train_runs(client)
    assert killed.info.status == "KILLED" and checkpoint_run_id(project) == killed.info.run_id
    assert all(s == [1, 2] for s in metric_steps(client, killed.info.run_id).values())
    assert not (project.models / "vae").exists()

    caplog.clear()
    train(project)
    assert any(
        m.startswith("resuming from") and m.endswith("at epoch 4, batch 0")
        for m in messages(caplog)
    )
    (run,) = train_runs(client)
    assert run.info.run_id == killed.info.run_id
    assert_complete(client, run, project)


def test_a_training_killed_before_its_first_step_continues_its_run(project, monkeypatch):
    """The new run's id is in a checkpoint before the first step: a kill that comes before
    train.checkpoint_every steps leaves no run behind either."""

    def no_batch(self, epoch, start_batch=0):
        raise KeyboardInterrupt
        yield  # a generator, like Batches.epoch

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(Batches, "epoch", no_batch)
        train(project)
    client = project.client()
    (killed,) = train_runs(client)
    assert torch.load(checkpoint_file(project), weights_only=True)["step"] == 0
    assert checkpoint_run_id(project) == killed.info.run_id and killed.info.status == "KILLED"

    train(project)
    (run,) = train_runs(client)
    assert run.info.run_id == killed.info.run_id
    assert_complete(client, run, project)


def test_a_complete_checkpoint_trains_nothing_and_leaves_its_finished_run_alone(project, caplog):
    """Before: 'resuming ... at epoch 9' of 8, and a second, empty run left behind."""
    caplog.set_level(logging.INFO, logger="vaelab")
    train(project)
    client = project.client()
    (first,) = train_runs(client)
    saved = checkpoint_file(project).read_bytes()

    caplog.clear()
    assert train(project)["epochs"] == EPOCHS
    logged = messages(caplog)
    assert (
        f"the training is complete in checkpoints/vae/seed0.pt ({EPOCHS} of {EPOCHS} epochs): "
        "nothing to train" in logged
    )
    assert not any("resuming" in m or f"epoch {EPOCHS + 1}" in m for m in logged), logged
    assert checkpoint_file(project).read_bytes() == saved  # not a step taken
    (run,) = train_runs(client)
    assert run.info.run_id == first.info.run_id and run.info.end_time == first.info.end_time
    assert_complete(client, run, project)


def test_a_checkpoint_without_a_run_id_resumes_into_one_new_run_with_its_epochs(
    project, monkeypatch
):
    """A checkpoint made before vaelab kept the run id still loads; its training goes on in a
    new run that gets the checkpoint's epochs, and the new id is kept for the next rerun."""
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        interrupt_at(patched, 3)
        train(project)
    state = torch.load(checkpoint_file(project), weights_only=True)
    del state["run_id"]
    torch.save(state, checkpoint_file(project))

    train(project)
    client = project.client()
    old, new = train_runs(client)
    assert (
        old.info.status == "KILLED"
    )  # the old run is left as it was: nothing in the checkpoint names it
    assert checkpoint_run_id(project) == new.info.run_id
    assert_complete(client, new, project)
    train(project)
    assert [r.info.run_id for r in train_runs(client)] == [old.info.run_id, new.info.run_id]


def test_epochs_are_sent_at_most_once_per_send_interval_and_all_by_the_end(project, monkeypatch):
    """With the default SEND_EVERY (seconds) and epochs of milliseconds: the first epoch goes
    at once, the others wait for the end's send; the run still has every epoch once."""
    from mlflow import MlflowClient

    from vaelab.train import mlflow_logger as tracker

    monkeypatch.setattr(tracker, "SEND_EVERY", 3600.0)
    calls = []
    original = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), **kwargs):
        if metrics:
            calls.append(sorted({m.step for m in metrics}))
        return original(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    train(project)
    assert calls == [[1], list(range(2, EPOCHS + 1))]
    client = project.client()
    (run,) = train_runs(client)
    assert_complete(client, run, project)


def test_a_run_ahead_of_its_checkpoint_gets_each_epoch_once_after_a_resume(project, monkeypatch):
    """The run gets epochs every send, the checkpoint only at the start and the end here: a
    kill at epoch 6 leaves the run with epochs 1-5 and a checkpoint of epoch 0. Before: the
    resumed training asked the run which epochs it had only before its first send, and sent
    epochs 2-5 again (`val_loss` at steps 1, 2, 2, 3, ...). Now every epoch is in it once."""
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    params["train"] |= {"checkpoint_every": 1000, "checkpoint_seconds": 1000}
    (project.root / "params.yaml").write_text(yaml.safe_dump(params))
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        interrupt_at(patched, 6)
        train(project)
    client = project.client()
    (killed,) = train_runs(client)
    assert all(s == [1, 2, 3, 4, 5] for s in metric_steps(client, killed.info.run_id).values())
    train(project)
    (run,) = train_runs(client)
    assert run.info.run_id == killed.info.run_id
    assert_complete(client, run, project)
