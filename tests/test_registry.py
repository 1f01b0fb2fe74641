"""The register stage: versions, tags, idempotence, the champion rule, failures, the pyfunc."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support.trained import (
    TINY_DATA,
    TINY_MODELS,
    free_port,
    save_variant,
    subprocess_env,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.errors import UserError
from vaelab.registry.register import decide_champion, run_register
from vaelab.tracking import git_commit

workspace = pytest.fixture(workspace_fixture)

REPO = Path(__file__).resolve().parents[1]


def register(ws, variants=("vae",), **registry):
    return run_register(
        tiny_params(variants, registry), models_root=ws.models, metrics_root=ws.metrics
    )


def test_register_tags_each_version_and_writes_registry_json(workspace):
    for variant in ("vae", "ae_pool"):
        save_variant(workspace.models, variant)
        write_eval(workspace.metrics, variant, 0.05)
    report = register(workspace, ("vae", "ae_pool"))

    assert report == json.loads((workspace.metrics / "registry.json").read_text())
    assert report["metric"] == "recon.mse" and report["mode"] == "min"
    vae = report["variants"]["vae"]
    assert vae["name"] == "vaelab-vae" and vae["version"] == 1 and vae["registered"] is True
    assert vae["aliases"] == {"champion": 1, "latest": 1}
    assert vae["champion"]["moved"] is True and "no champion yet" in vae["champion"]["reason"]
    assert report["variants"]["ae_pool"]["name"] == "vaelab-ae_pool"

    client = workspace.client()
    version = client.get_model_version_by_alias("vaelab-vae", "champion")
    md5 = hashlib.md5((workspace.models / "vae" / "seed0" / "model.pt").read_bytes()).hexdigest()
    assert version.tags["model_md5"] == md5 == vae["model_md5"]
    assert version.tags["git_commit"] == git_commit() and version.tags["dataset"] == "lfw"
    assert float(version.tags["metric.recon.mse"]) == 0.05
    assert float(version.tags["metric.blur.laplacian_var.recon"]) == 0.01
    assert "metric.split" not in version.tags  # a string leaf of the eval file
    run = client.get_run(version.run_id)
    assert run.data.tags["variant"] == "vae" and run.data.metrics["eval.recon.mse"] == 0.05
    assert client.get_experiment(run.info.experiment_id).name == "vaelab"


def test_rerun_with_unchanged_models_registers_nothing(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    register(workspace)
    runs_before = workspace.client().search_runs(
        [workspace.client().get_experiment_by_name("vaelab").experiment_id]
    )

    again = register(workspace)["variants"]["vae"]
    assert again["registered"] is False and again["version"] == 1
    assert again["aliases"] == {"champion": 1, "latest": 1}
    assert "already the champion" in again["champion"]["reason"]
    client = workspace.client()
    assert len(client.search_model_versions("name='vaelab-vae'")) == 1
    assert len(client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])) == len(
        runs_before
    )


def test_the_champion_moves_only_to_a_lower_mse(workspace):
    for seed, mse in ((0, 0.05), (1, 0.04), (2, 0.06)):
        save_variant(workspace.models, "vae", seed=seed)
        write_eval(workspace.metrics, "vae", mse)
        outcome = register(workspace)["variants"]["vae"]
        if seed == 1:
            assert outcome["champion"] == {
                "version": 2,
                "moved": True,
                "reason": (
                    "version 2 beats champion version 1: recon.mse 0.04 < 0.05 (lower is better)"
                ),
                "rule": "repro",
            }
    assert outcome["version"] == 3 and outcome["registered"] is True
    assert outcome["aliases"] == {"champion": 2, "latest": 3}
    assert outcome["champion"]["moved"] is False
    assert (
        "0.06 >= 0.04" in outcome["champion"]["reason"]
        and "champion stays" in outcome["champion"]["reason"]
    )
    client = workspace.client()
    assert int(client.get_model_version_by_alias("vaelab-vae", "champion").version) == 2
    assert int(client.get_model_version_by_alias("vaelab-vae", "latest").version) == 3

    # Going back to the first weights reuses version 1 and leaves the champion alone.
    save_variant(workspace.models, "vae", seed=0)
    back = register(workspace)["variants"]["vae"]
    assert (
        back["version"] == 1
        and back["registered"] is False
        and back["aliases"] == {"champion": 2, "latest": 3}
    )
    assert "model unchanged since version 1" in back["champion"]["reason"]


def test_in_mode_max_the_champion_moves_only_to_a_higher_value(workspace):
    moves = []
    for seed, psnr in ((0, 20.0), (1, 19.0), (2, 25.0)):
        save_variant(workspace.models, "vae", seed=seed)
        write_eval(workspace.metrics, "vae", 0.05, psnr=psnr)
        outcome = register(workspace, metric="recon.psnr", mode="max")["variants"]["vae"]
        moves.append(
            (outcome["version"], outcome["champion"]["version"], outcome["champion"]["moved"])
        )
    assert moves == [(1, 1, True), (2, 1, False), (3, 3, True)]
    assert "25 > 20 (higher is better)" in outcome["champion"]["reason"]


def test_a_champion_without_the_metric_gives_way(workspace):
    save_variant(workspace.models, "vae", seed=0)
    write_eval(workspace.metrics, "vae", 0.05)
    register(workspace)
    save_variant(workspace.models, "vae", seed=1)
    write_eval(workspace.metrics, "vae", 0.05, latent={"active_units": 3})
    outcome = register(workspace, metric="latent.active_units", mode="max")["variants"]["vae"]
    assert outcome["champion"]["version"] == 2 and outcome["champion"]["moved"] is True
    assert "has no latent.active_units" in outcome["champion"]["reason"]


@pytest.mark.parametrize(
    ("champion", "champion_value", "candidate_value", "is_new", "moves"),
    [
        (None, None, 0.5, True, True),
        (None, None, 0.5, False, True),  # reused version, but there is no champion at all
        (1, 0.4, 0.3, False, False),  # reused version never displaces a champion
        (1, 0.4, 0.4, True, False),  # a tie keeps the champion
        (1, float("nan"), 0.4, True, True),
    ],
)
def test_decide_champion(champion, champion_value, candidate_value, is_new, moves):
    decision = decide_champion(
        metric="recon.mse",
        mode="min",
        candidate=2,
        candidate_value=candidate_value,
        champion=champion,
        champion_value=champion_value,
        is_new=is_new,
    )
    assert decision.moves is moves and decision.reason


@pytest.mark.parametrize("missing", ["model folder", "eval file", "metric", "evaluated_on"])
def test_missing_inputs_fail_before_anything_is_written(workspace, missing):
    for variant in ("vae", "ae_pool"):
        save_variant(workspace.models, variant)
        write_eval(workspace.metrics, variant, 0.05)
    if missing == "model folder":
        (workspace.models / "ae_pool" / "seed0" / "model.pt").unlink()
        expected = "models/ae_pool: no trained model; run `dvc repro train@ae_pool` first"
    elif missing == "eval file":
        (workspace.metrics / "detail" / "eval" / "ae_pool.json").unlink()
        expected = "metrics/detail/eval/ae_pool.json: not found"
    elif missing == "metric":
        (workspace.metrics / "detail" / "eval" / "ae_pool.json").write_text(
            json.dumps({"recon": {"psnr": 20.0}})
        )
        expected = "metrics/detail/eval/ae_pool.json: no numeric 'recon.mse'"
    else:  # an evaluation written before evaluate recorded what it measured on
        (workspace.metrics / "detail" / "eval" / "ae_pool.json").write_text(
            json.dumps({"recon": {"mse": 0.05}})
        )
        expected = (
            "metrics/detail/eval/ae_pool.json: no evaluated_on record of the test split and "
            r"settings \(written by an older vaelab\); rerun `dvc repro evaluate@ae_pool`"
        )

    with pytest.raises(UserError, match=expected):
        register(workspace, ("vae", "ae_pool"))
    assert not (workspace.metrics / "registry.json").exists()
    client = workspace.client()
    assert (
        client.search_registered_models() == [] and client.get_experiment_by_name("vaelab") is None
    )


def _load_stage():
    spec = importlib.util.spec_from_file_location("register_stage", REPO / "stages" / "register.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unreachable_server_fails_fast_naming_the_uri(workspace, monkeypatch, capsys):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    params = {
        "data": TINY_DATA,
        "models": {"vae": TINY_MODELS["vae"]},
        "registry": {"retries": 2, "backoff": 0.1, "timeout": 1.0},
    }
    (workspace.root / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        _load_stage().main([])
    elapsed = time.monotonic() - started

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaelab: error: cannot reach the MLflow tracking server at {uri}")
    assert "after 2 attempt(s)" in err and "Traceback" not in err
    assert elapsed < 15, f"gave up after {elapsed:.1f} s"
    assert not (workspace.metrics / "registry.json").exists()


def test_the_champion_loads_by_alias_in_a_fresh_process(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    register(workspace)
    script = (
        "import json, mlflow, numpy as np\n"
        "model = mlflow.pyfunc.load_model('models:/vaelab-vae@champion')\n"
        "images = np.zeros((2, 16, 16, 1), dtype=np.uint8)\n"
        "print(json.dumps([list(model.predict(images).shape),\n"
        "                  list(model.predict(images, params={'mode': 'encode'}).shape)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=workspace.root,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[2, 16, 16, 1], [2, 4]]


def test_the_pyfunc_reconstructs_and_encodes_and_its_decoder_decodes(workspace):
    import mlflow
    from mlflow.exceptions import MlflowException

    for variant in ("vae", "ae_pool"):
        save_variant(workspace.models, variant)
        write_eval(workspace.metrics, variant, 0.05)
    report = register(workspace, ("vae", "ae_pool"))
    vae = mlflow.pyfunc.load_model("models:/vaelab-vae@champion")
    ae = mlflow.pyfunc.load_model("models:/vaelab-ae_pool@latest")

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 16, 16, 1), dtype=np.uint8)
    recon = vae.predict(pixels)  # reconstruct is the default mode
    assert recon.shape == (3, 16, 16, 1) and recon.dtype == np.float32
    assert recon.min() >= 0.0 and recon.max() <= 1.0
    latents = vae.predict(pixels, params={"mode": "encode"})
    assert latents.shape == (3, 4) and latents.dtype == np.float32
    ae_latents = ae.predict(pixels, params={"mode": "encode"})
    assert ae_latents.ndim == 2 and len(ae_latents) == 3
    assert ae.predict(pixels).shape == (3, 16, 16, 1)

    # The decoder is logged next to the model, in the version's run; registry.json names it.
    uri = report["variants"]["vae"]["decoder_uri"]
    version = workspace.client().get_model_version("vaelab-vae", "1")
    assert uri == f"runs:/{version.run_id}/vae-decoder"
    decoder = mlflow.pyfunc.load_model(uri)
    decoded = decoder.predict(latents)
    assert decoded.shape == (3, 16, 16, 1) and decoded.dtype == np.float32
    ae_decoder = mlflow.pyfunc.load_model(report["variants"]["ae_pool"]["decoder_uri"])
    assert ae_decoder.predict(ae_latents).shape == (3, 16, 16, 1)
    # Decoding the posterior means is what reconstruct does in eval mode.
    np.testing.assert_allclose(decoded, recon, atol=1e-5)

    # generate: n draws from N(0, I), the same for the same seed, through either model.
    python_model = vae.unwrap_python_model()
    samples = python_model.generate(5, seed=7)
    assert samples.shape == (5, 16, 16, 1)
    np.testing.assert_array_equal(samples, decoder.unwrap_python_model().generate(5, seed=7))
    assert not np.array_equal(samples, python_model.generate(5, seed=8))

    # predict checks what it is given (no input schema: MLflow would cast JSON to it): shape,
    # whole-number pixels 0..255, real latents; the 400s say shape and dtype.
    for model, bad_input, params, message in [
        (vae, pixels, {"mode": "sharpen"}, "not one of reconstruct, encode"),
        (vae, pixels[:, :8], {}, r"expected images of shape \(N, 16, 16, 1\)"),
        (
            vae,
            pixels.astype(np.float32) / 255.0,
            {},
            r"got float32 array of shape \(3, 16, 16, 1\) with non-integer values",
        ),
        (vae, pixels[..., 0], {}, r"got uint8 array of shape \(3, 16, 16\)"),
        (vae, latents, {"mode": "encode"}, "expected images of shape"),
        (decoder, pixels, None, r"expected latents of shape \(N, 4\)"),
        (decoder, latents > 0, None, r"real numbers, for this model; got bool array"),
        (decoder, np.full((1, 4), np.nan, dtype=np.float32), None, "latents must be finite"),
    ]:
        with pytest.raises(MlflowException, match=message):
            model.predict(bad_input, params=params)
    # Whole numbers of any dtype are pixels, real numbers of any dtype latents.
    np.testing.assert_array_equal(vae.predict(pixels.astype(np.float64)), recon)
    np.testing.assert_array_equal(decoder.predict(latents.astype(np.float64)), decoded)
    # The plain methods check the same.
    for call, message in [
        (lambda: python_model.reconstruct(pixels * 2.0), "with values from 0 to 5"),
        (lambda: python_model.encode(pixels[:, :8]), r"expected images of shape \(N, 16, 16, 1\)"),
        (
            lambda: python_model.decode(pixels[:, 0, 0, :]),
            r"expected latents of shape \(N, 4\)",
        ),
        (lambda: python_model.generate(0), "n >= 1"),
    ]:
        with pytest.raises(MlflowException, match=message):
            call()


def test_a_version_registered_without_a_decoder_gets_one_in_its_own_run(workspace):
    import mlflow

    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    register(workspace)
    client = workspace.client()
    client.delete_model_version_tag(
        "vaelab-vae", "1", "decoder_uri"
    )  # as versions logged before decoders

    again = register(workspace)["variants"]["vae"]
    version = client.get_model_version("vaelab-vae", "1")
    assert again["version"] == 1 and again["registered"] is False
    assert (
        again["decoder_uri"] == version.tags["decoder_uri"] == f"runs:/{version.run_id}/vae-decoder"
    )
    assert client.get_run(version.run_id).info.status == "FINISHED"
    decoder = mlflow.pyfunc.load_model(again["decoder_uri"])
    assert decoder.predict(np.zeros((2, 4), dtype=np.float32)).shape == (2, 16, 16, 1)


def test_a_version_logged_without_an_input_schema_still_takes_json_pixels(tmp_path):
    """Without an input schema (before it was added, and again since issue 26), MLflow passes
    JSON pixels through as int64: whole numbers 0..255 are pixels, anything else is refused."""
    from mlflow.exceptions import MlflowException

    from vaelab.registry.pyfunc import VaelabPyfunc

    pyfunc = VaelabPyfunc.from_folder(save_variant(tmp_path, "vae"))
    pixels = np.random.default_rng(0).integers(0, 256, size=(2, 16, 16, 1))
    np.testing.assert_array_equal(
        pyfunc.predict(None, pixels.tolist()), pyfunc.predict(None, pixels.astype(np.uint8))
    )
    with pytest.raises(MlflowException, match=r"images must be whole-number pixels 0\.\.255"):
        pyfunc.predict(None, pixels + 256)
