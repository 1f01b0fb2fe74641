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
    serve,
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

    server, url = serve(workspace, "serve")
    with server:
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
        assert answer.status_code == 400 and "(N, 16, 16, 1)" in answer.json()["message"]

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
        # JSON integers are latents too.
        answer = requests.post(f"{url}/invocations", json={"inputs": [[0, 1, 0, 0]]}, timeout=30)
        assert answer.status_code == 200, answer.text

        # Images sent to the decoder, and more latents than registry.max_images (512): 400s
        # that say shape and dtype, without the numbers.
        images = np.random.default_rng(2).integers(0, 256, size=(2, 16, 16, 1)).tolist()
        answer = requests.post(f"{url}/invocations", json={"inputs": images}, timeout=30)
        assert answer.status_code == 400
        assert answer.json()["message"] == (
            "expected latents of shape (N, 4), real numbers, for this model; "
            "got int64 array of shape (2, 16, 16, 1)"
        )
        answer = requests.post(
            f"{url}/invocations", json={"inputs": np.zeros((513, 4)).tolist()}, timeout=30
        )
        assert answer.status_code == 400
        assert answer.json()["message"].startswith(
            "513 latents in one call: the limit is 512 (registry.max_images"
        )


def test_served_images_must_be_whole_pixels_within_the_request_limit(workspace):
    """Issue 26, items 1, 2 and 8: MLflow used to cast JSON pixels to the signature's uint8,
    so a [0, 1]-normalised face came back 200 as a black one; no request was too large;
    400s quoted the input array."""
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    run_register(tiny_params(), models_root=workspace.models, metrics_root=workspace.metrics)
    server, url = serve(workspace, "serve-checks")
    with server:

        def post(inputs: np.ndarray) -> requests.Response:
            return requests.post(f"{url}/invocations", json={"inputs": inputs.tolist()}, timeout=30)

        half = post(np.full((1, 16, 16, 1), 0.5))
        assert half.status_code == 400, half.text
        assert half.json() == {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": "images must be whole-number pixels 0..255; got float64 array of shape "
            "(1, 16, 16, 1) with non-integer values such as 0.5 (a [0, 1]-normalised image? "
            "send round(255 * x) as integers)",
        }
        black = post(np.zeros((1, 16, 16, 1), dtype=np.int64))
        assert black.status_code == 200, black.text

        # Whole numbers written as floats are pixels; out of range is refused.
        pixels = np.random.default_rng(0).integers(0, 256, size=(8, 16, 16, 1))
        as_ints, as_floats = post(pixels), post(pixels.astype(np.float64))
        assert as_ints.status_code == as_floats.status_code == 200, as_floats.text
        assert as_ints.json() == as_floats.json()
        answer = post(np.full((1, 16, 16, 1), 256))
        assert answer.status_code == 400
        assert "with values from 256 to 256" in answer.json()["message"]

        # One over registry.max_images (512): refused before the model runs, naming the setting.
        answer = post(np.zeros((513, 16, 16, 1), dtype=np.int64))
        assert answer.status_code == 400
        assert answer.json()["message"].startswith(
            "513 images in one call: the limit is 512 (registry.max_images in params.yaml"
        )

        # A wrong shape says shape and dtype; the reply does not quote the array.
        answer = post(pixels[:4, :8])
        assert answer.status_code == 400
        assert answer.json()["message"] == (
            "expected images of shape (N, 16, 16, 1) for this model, pixels 0..255; "
            "got int64 array of shape (4, 8, 16, 1)"
        )
        assert len(answer.content) < 300

        # A param other than mode never reaches predict (see the next test): the known ones
        # apply, the rest are dropped by MLflow with a warning in the server's log.
        answer = requests.post(
            f"{url}/invocations",
            json={"inputs": pixels[:1].tolist(), "params": {"mode": "encode", "foo": 1}},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["predictions"]).shape == (1, 4)


def test_mlflow_drops_params_the_schema_does_not_name_before_predict():
    """Why an unknown request param ({"foo": 1}) cannot be refused by predict, only in front of
    MLflow's app as `vaelab serve` does (issue 26, item 8): MLflow
    3's PyFuncModel.predict passes params through _enforce_params_schema, which keeps only the
    names of the params schema (and gives a model without one no params at all) before the
    model's predict runs. If this fails, MLflow hands them on: refuse them in predict."""
    from mlflow.models.utils import _enforce_params_schema

    from vaelab.registry.pyfunc import image_signature

    schema = image_signature(16, 1).params
    assert _enforce_params_schema({"mode": "encode", "foo": 1}, schema) == {"mode": "encode"}
    assert _enforce_params_schema({"foo": 1}, None) == {}


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
