"""Serving: `mlflow models serve` answering /invocations, and a real `mlflow server` as registry."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import requests

from tests.support.trained import (
    free_port,
    running_server,
    save_variant,
    subprocess_env,
    tiny_params,
    tracking_server,
    workspace_fixture,
    write_eval,
)
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

MLFLOW = [sys.executable, "-m", "mlflow"]


def test_mlflow_models_serve_answers_invocations_for_the_champion(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    report = run_register(
        tiny_params(), models_root=workspace.models, metrics_root=workspace.metrics
    )

    port = free_port()
    command = [
        *MLFLOW,
        "models",
        "serve",
        "-m",
        "models:/vaelab-vae@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    url = f"http://127.0.0.1:{port}"
    with running_server(
        command,
        ready_url=f"{url}/ping",
        log_path=workspace.root / "serve.log",
        env=subprocess_env(MLFLOW_TRACKING_URI=workspace.uri),
    ):
        images = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 1)).tolist()
        answer = requests.post(
            f"{url}/invocations",
            json={"inputs": images, "params": {"mode": "reconstruct"}},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["predictions"]).shape == (2, 16, 16, 1)

        answer = requests.post(
            f"{url}/invocations", json={"inputs": images, "params": {"mode": "encode"}}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        latents = answer.json()["predictions"]
        assert np.asarray(latents).shape == (2, 4)

        # The signature is enforced: 400s, not 500s, that say what was expected.
        answer = requests.post(
            f"{url}/invocations", json={"inputs": images, "params": {"mode": "sharpen"}}, timeout=30
        )
        assert answer.status_code == 400 and "not one of" in answer.json()["message"]
        answer = requests.post(f"{url}/invocations", json={"inputs": latents}, timeout=30)
        assert answer.status_code == 400 and "(-1, 16, 16, 1)" in answer.json()["message"]

    # The decoder logged with the version serves latents -> images.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *MLFLOW,
        "models",
        "serve",
        "-m",
        report["variants"]["vae"]["decoder_uri"],
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    with running_server(
        command,
        ready_url=f"{url}/ping",
        log_path=workspace.root / "serve-decoder.log",
        env=subprocess_env(MLFLOW_TRACKING_URI=workspace.uri),
    ):
        draws = np.random.default_rng(1).standard_normal((3, 4)).tolist()
        answer = requests.post(f"{url}/invocations", json={"inputs": draws}, timeout=30)
        assert answer.status_code == 200, answer.text
        samples = np.asarray(answer.json()["predictions"])
        assert samples.shape == (3, 16, 16, 1) and samples.min() >= 0.0 and samples.max() <= 1.0


# About 11 s on two cores (20 s when they are busy): not marked slow, most of it is the
# server starting with one worker on a pre-migrated database (tracking_server).
def test_a_real_tracking_server_registers_moves_the_champion_and_serves_by_alias(
    workspace, tmp_path_factory, monkeypatch
):
    server_dir = workspace.root / "server"
    with tracking_server(server_dir, tmp_path_factory) as server:
        url = server.url
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        outcomes = []
        for seed, mse in ((0, 0.05), (1, 0.04)):
            save_variant(workspace.models, "vae", seed=seed)
            write_eval(workspace.metrics, "vae", mse)
            report = run_register(
                tiny_params(), models_root=workspace.models, metrics_root=workspace.metrics
            )
            outcomes.append(report["variants"]["vae"])
        assert [o["version"] for o in outcomes] == [1, 2]
        assert outcomes[1]["champion"]["moved"] is True and outcomes[1]["aliases"] == {
            "champion": 2,
            "latest": 2,
        }

        import mlflow

        model = mlflow.pyfunc.load_model("models:/vaelab-vae@champion")
        assert model.predict(np.zeros((1, 16, 16, 1), dtype=np.uint8)).shape == (1, 16, 16, 1)
        assert model.unwrap_python_model().config.seed == 1  # the second weights

    # The artifacts went to the server's store, not to a local ./mlruns.
    assert list((server_dir / "artifacts").rglob("model.pt"))
    assert not (workspace.root / "mlruns").exists()
