"""`vaelab ui` and `make ui`: the MLflow UI on 127.0.0.1 over the project's store, opened on the
vaelab experiment, stopped by Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
import requests

from tests.support.trained import free_port, subprocess_env, workspace_fixture
from vaelab.registry.ui import experiment_url
from vaelab.tracking import experiment_id

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
URL = re.compile(r"experiment vaelab: (http://127\.0\.0\.1:(\d+)/#/experiments/(\d+)/\S+)")

workspace = pytest.fixture(workspace_fixture)


def printed_url(log: Path, process: subprocess.Popen, deadline_s: float = 120.0) -> re.Match:
    """The URL line the command prints once the server answers."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = URL.search(log.read_text())
        if found:
            return found
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        time.sleep(0.25)
    raise AssertionError(f"no URL printed in {deadline_s:g} s:\n{log.read_text()[-4000:]}")


@pytest.mark.parametrize("command", ["vaelab ui", "make ui"])
def test_ui_serves_the_store_on_localhost_and_prints_the_vaelab_experiment(
    workspace, command, monkeypatch
):
    if command == "make ui" and shutil.which("make") is None:
        pytest.fail("make is missing: the README's commands need it")
    client = workspace.client()
    exp_id = experiment_id(client, workspace.uri)
    run = client.create_run(exp_id, run_name="vae/seed0")
    client.log_text(run.info.run_id, "recon.mse 0.05", "evaluation/note.txt")
    shutil.copy2(REPO / "params.yaml", workspace.root / "params.yaml")
    shutil.copy2(REPO / "Makefile", workspace.root / "Makefile")
    port = free_port()
    # The install and the offline plots page are the install's, done: make ui alone runs.
    make = ["make", "-o", str(VENV / ".vaelab-installed"), "-o", ".dvc/plots/page.html"]
    make.append(f"VENV={VENV}")
    argv = (
        [sys.executable, "-m", "vaelab.cli", "ui", "--port", str(port)]
        if command == "vaelab ui"
        else [*make, "ui", f"UI_PORT={port}"]
    )
    env = subprocess_env(
        MLFLOW_TRACKING_URI=workspace.uri,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]),
    )
    log = workspace.root / "ui.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=workspace.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        found = printed_url(log, process)
        url, printed_port, printed_exp = found.groups()
        assert (int(printed_port), printed_exp) == (port, exp_id)
        assert url == experiment_url(f"http://127.0.0.1:{port}", exp_id)
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and "MLflow" in page.text
        # The server reads this store: its vaelab experiment and the run in it.
        answer = requests.get(
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/runs/get",
            params={"run_id": run.info.run_id},
            timeout=10,
        )
        assert answer.json()["run"]["info"]["experiment_id"] == exp_id
        artifact = requests.get(
            f"http://127.0.0.1:{port}/get-artifact",
            params={"path": "evaluation/note.txt", "run_uuid": run.info.run_id},
            timeout=10,
        )
        assert artifact.status_code == 200 and artifact.text == "recon.mse 0.05"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal: the foreground group
        process.wait(timeout=30)
        with pytest.raises(requests.ConnectionError):  # the server went with it
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
