"""`vaelab serve`: MLflow's scoring app behind a gate that bounds each request before MLflow
reads it (issue 26, items 2 and 8), run as a real command on 127.0.0.1.

Each check here fails against plain `mlflow models serve` (tests/test_serve.py): it reads and
parses any body whole (gigabytes for tens of MB of JSON) before answering, and answers 200 to
a request with an unknown param.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.support.trained import (
    save_variant,
    serve,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

MEGABYTE = 1 << 20
# What a refused 50 MB body may add to the server's peak memory (MLflow's parsing of it
# would add gigabytes).
MAX_GROWTH = 100 * MEGABYTE


def _register(workspace) -> dict:
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    return run_register(tiny_params(), models_root=workspace.models, metrics_root=workspace.metrics)


def _peak_memory(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _zeros_json(size: int) -> bytes:
    """A valid request of about ``size`` bytes: 16x16x1 black images, as `json.dumps` writes
    them."""
    image = json.dumps(np.zeros((16, 16, 1), dtype=np.int64).tolist())
    count = size // (len(image) + 2)
    return ('{"inputs": [' + ", ".join([image] * count) + "]}").encode()


def _chunks(total: int, chunk: int = MEGABYTE) -> Iterator[bytes]:
    """``total`` bytes of a JSON request, in chunks: requests sends a generator chunked,
    without a Content-Length."""
    yield b'{"inputs": ['
    for _ in range(total // chunk):
        yield b"[[[0]]], " * (chunk // 9)


def _post(url: str, payload: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=payload, timeout=30)


def test_vaelab_serve_answers_as_mlflow_models_serve_does(workspace):
    _register(workspace)
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 1)).tolist()
    requests_sent = [
        {"inputs": pixels},
        {"inputs": pixels, "params": {"mode": "encode"}},
        {"inputs": pixels, "params": {"mode": "sharpen"}},
        {"inputs": np.full((1, 16, 16, 1), 0.5).tolist()},
    ]
    answers = {}
    for name, mlflow in (("vaelab", False), ("mlflow", True)):
        server, url = serve(workspace, f"serve-{name}", mlflow=mlflow)
        with server:
            answers[name] = [_post(url, payload) for payload in requests_sent]
            answers[name].append(requests.get(f"{url}/version", timeout=10))
    for ours, theirs in zip(answers["vaelab"], answers["mlflow"], strict=True):
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    assert [a.status_code for a in answers["vaelab"]] == [200, 200, 400, 400, 200]
    assert np.asarray(answers["vaelab"][1].json()["predictions"]).shape == (3, 4)


def test_vaelab_serve_refuses_a_body_over_the_limit_before_reading_it(workspace):
    """A 50 MB body (about 38,000 images; `mlflow models serve` reads and parses all of it,
    gigabytes, and then answers 400), sent whole or chunked: 413 naming the setting, and the
    server's peak memory barely moves."""
    _register(workspace)
    server, url = serve(workspace, "serve-gate", mlflow=False)
    with server as process:
        big = _zeros_json(50 * MEGABYTE)
        assert len(big) > 49 * MEGABYTE
        before = _peak_memory(process.pid)
        for body in (big, _chunks(50 * MEGABYTE)):
            answer = requests.post(
                f"{url}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            assert answer.status_code == 413, answer.text[:300]
            message = answer.json()["message"]
            assert (
                message.startswith("request body over ") and "registry.max_images (512)" in message
            )
            assert _peak_memory(process.pid) - before < MAX_GROWTH
            # Still up, and still serving.
            assert requests.get(f"{url}/ping", timeout=10).status_code == 200
            pixels = np.zeros((2, 16, 16, 1), dtype=np.int64).tolist()
            assert _post(url, {"inputs": pixels}).status_code == 200

        # Under the byte limit but over registry.max_images: the model's own 400, before
        # MLflow parses the request.
        answer = _post(url, {"inputs": np.zeros((513, 16, 16, 1), dtype=np.int64).tolist()})
        assert answer.status_code == 400
        assert answer.json()["message"].startswith(
            "513 images in one call: the limit is 512 (registry.max_images"
        )


def test_vaelab_serve_refuses_params_the_model_does_not_name(workspace):
    """`mlflow models serve` drops {"foo": 1} with a warning in its log and answers 200."""
    report = _register(workspace)
    pixels = np.zeros((1, 16, 16, 1), dtype=np.int64).tolist()
    server, url = serve(workspace, "serve-params", mlflow=False)
    with server:
        for params in ({"foo": 1}, {"mode": "encode", "foo": 1, "bar": 2}):
            answer = _post(url, {"inputs": pixels, "params": params})
            assert answer.status_code == 400, answer.text
            assert answer.json() == {
                "error_code": "INVALID_PARAMETER_VALUE",
                "message": f"unknown params {', '.join(sorted(set(params) - {'mode'}))}: "
                "this model's params are mode",
            }
        answer = _post(url, {"inputs": pixels, "params": ["mode"]})
        assert answer.status_code == 400 and "params must be a JSON object" in answer.text
        # A param of the wrong type: its type named, the inputs not quoted (MLflow's own 400
        # for {"mode": 3} quotes the request's inputs).
        many = np.zeros((8, 16, 16, 1), dtype=np.int64).tolist()
        answer = _post(url, {"inputs": many, "params": {"mode": 3}})
        assert answer.status_code == 400 and len(answer.content) < 200, answer.text
        assert answer.json()["message"] == "param mode must be a string; got a JSON int"
        answer = _post(url, {"inputs": pixels, "params": {"mode": "encode"}})
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["predictions"]).shape == (1, 4)

    # The decoder names no params at all.
    server, url = serve(
        workspace, "serve-decoder", report["variants"]["vae"]["decoder_uri"], mlflow=False
    )
    with server:
        draws = np.zeros((2, 4)).tolist()
        answer = _post(url, {"inputs": draws, "params": {"mode": "encode"}})
        assert answer.status_code == 400
        assert answer.json()["message"] == "unknown params mode: this model takes no params"
        answer = _post(url, {"inputs": draws})
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["predictions"]).shape == (2, 16, 16, 1)


def test_vaelab_serve_needs_an_mlflow_model_and_a_free_port(tmp_path, monkeypatch, capsys):
    """User errors, exit 2, before anything loads: a train output folder (no MLmodel) and a
    port something already listens on."""
    from vaelab.cli import main

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "models" / "vae"
    folder.mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "-m", str(folder)])
    assert exit_info.value.code == 2
    assert "not an MLflow model" in capsys.readouterr().err

    (folder / "MLmodel").write_text("flavors: {}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "-m", str(folder), "-p", str(port)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"-h 127.0.0.1 -p {port}: cannot listen there" in err and "Traceback" not in err


def test_a_param_of_another_json_type_is_named_by_its_type():
    from vaelab.registry.serve import wrong_type

    assert wrong_type("mode", "encode", "string") is None
    assert wrong_type("mode", 3, "string") == "param mode must be a string; got a JSON int"
    assert wrong_type("n", True, "long") == "param n must be a long; got a JSON bool"
    assert wrong_type("x", 2, "double") is None and wrong_type("f", False, "boolean") is None
    assert wrong_type("t", "x", "datetime") is None  # left to MLflow
