"""What register logs for an MLflow user: the training runs' evaluation, figures, history and
config (found by tag, once per content), the compare report, the logged model's name and
signature, and the registry's descriptions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.support.trained import (
    evaluated_on,
    save_variant,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.cli import main
from vaelab.models.saved import weights_md5
from vaelab.registry.register import run_register
from vaelab.tracking import experiment_id

workspace = pytest.fixture(workspace_fixture)


def register(ws):
    return run_register(
        tiny_params(),
        models_root=ws.models,
        metrics_root=ws.metrics,
        reports_root=ws.root / "reports",
    )


def png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(path)


def training_run(ws, md5, *, seed="0"):
    """A finished run tagged as ``train`` tags a replicate's run once its weights are saved."""
    client = ws.client()
    run = client.create_run(
        experiment_id(client, ws.uri),
        run_name=f"vae/seed{seed}",
        tags={"stage": "train", "variant": "vae", "seed": seed, "model_md5": md5},
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def write_detail(ws, mse):
    """metrics/detail/eval/vae.json (the full evaluation, which register prefers)."""
    payload = {
        "recon": {"mse": mse, "psnr": 20.0},
        "sd": {"recon": {"mse": 0.002}},
        "intervals": {"recon": {"mse": {"low": 0.01, "high": 0.09}}},
        "notes": {"x": "words"},
        "evaluated_on": evaluated_on(),
    }
    path = ws.metrics / "detail" / "eval" / "vae.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def artifacts(client, run_id, folder=None):
    found = []
    for item in client.list_artifacts(run_id, folder):
        found += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


def test_training_runs_get_the_evaluation_figures_history_and_config_once(workspace):
    folder = save_variant(workspace.models, "vae")
    md5 = weights_md5(folder / "seed0")
    run_id = training_run(workspace, md5)
    decoy = training_run(workspace, "f" * 32)  # other weights: left alone
    write_eval(workspace.metrics, "vae", 0.9)  # the headline file; the detail below wins
    write_detail(workspace, 0.05)
    (workspace.metrics / "history").mkdir(parents=True)
    (workspace.metrics / "history" / "vae.csv").write_text("epoch,val_loss\n1,2.0\n")
    png(workspace.root / "reports" / "vae" / "samples.png", 10)
    png(workspace.root / "reports" / "vae" / "radius.png", 20)

    vae = register(workspace)["variants"]["vae"]
    assert vae["metric"] == 0.05 and vae["train_runs"] == {"0": run_id}
    client = workspace.client()
    assert client.get_model_version("vaelab-vae", "1").tags["train_run_id"] == run_id
    run = client.get_run(run_id)
    assert (
        run.data.metrics["eval.recon.mse"] == 0.05
        and run.data.metrics["eval.sd.recon.mse"] == 0.002
    )
    assert not [key for key in run.data.metrics if key.startswith("eval.intervals")]
    assert artifacts(client, run_id) == [
        "config/config.json",
        "evaluation/vae.json",
        "figures/radius.png",
        "figures/samples.png",
        "history/vae.csv",
    ]
    assert len(run.data.tags["logged_md5"]) == 32
    assert client.get_run(decoy).data.metrics == {} and artifacts(client, decoy) == []

    register(workspace)  # nothing changed: nothing logged again
    assert [m.value for m in client.get_metric_history(run_id, "eval.recon.mse")] == [0.05]

    write_detail(workspace, 0.04)  # evaluate reran: the run gets the new numbers
    register(workspace)
    assert [m.value for m in client.get_metric_history(run_id, "eval.recon.mse")] == [0.05, 0.04]
    assert client.get_run(run_id).data.metrics["eval.recon.mse"] == 0.04


def test_without_its_training_run_in_the_store_a_replicate_is_registered_all_the_same(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    vae = register(workspace)["variants"]["vae"]
    assert vae["train_runs"] == {"0": None} and vae["version"] == 1
    assert "train_run_id" not in workspace.client().get_model_version("vaelab-vae", "1").tags


def test_the_compare_report_is_one_run_per_content(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    reports = workspace.root / "reports"
    reports.mkdir()
    (reports / "compare.md").write_text("# compare\n")
    png(reports / "compare" / "samples.png", 30)

    first = register(workspace)["compare_run"]
    assert first["logged"] is True
    assert register(workspace)["compare_run"] == {"run_id": first["run_id"], "logged": False}
    client = workspace.client()
    run = client.get_run(first["run_id"])
    assert run.info.run_name == "compare" and run.info.status == "FINISHED"
    assert run.data.tags["stage"] == "compare" and "git_commit" in run.data.tags
    assert artifacts(client, run.info.run_id) == ["compare.md", "compare/samples.png"]

    (reports / "compare.md").write_text("# compare, again\n")
    second = register(workspace)["compare_run"]
    assert second["logged"] is True and second["run_id"] != first["run_id"]
    exp = client.get_experiment_by_name("vaelab").experiment_id
    assert len(client.search_runs([exp], filter_string="tags.stage = 'compare'")) == 2


def test_the_logged_model_is_named_after_the_variant_with_a_signature_and_descriptions(workspace):
    import mlflow
    from mlflow.models import get_model_info

    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    register(workspace)
    client = workspace.client()
    version = client.get_model_version("vaelab-vae", "1")

    info = get_model_info(f"runs:/{version.run_id}/vae")
    assert info.name == "vae"
    # No input schema: predict checks the images (MLflow would cast JSON to a schema's dtype).
    assert info.signature.inputs is None
    (output,) = info.signature.outputs.inputs
    assert output.type == np.dtype("float32") and output.shape == (-1, 16, 16, 1)
    assert [(p.name, p.default) for p in info.signature.params.params] == [("mode", "reconstruct")]
    assert info.metadata == {
        "vaelab_variant": "vae",
        "arch": "vae_conv",
        "latent_dim": 4,
        "role": "images",
        "decoder": "vae-decoder",
    }

    decoder = get_model_info(f"runs:/{version.run_id}/vae-decoder")
    assert decoder.name == "vae-decoder" and decoder.metadata["role"] == "decoder"
    assert decoder.signature.inputs is None
    assert decoder.signature.outputs.inputs[0].shape == (-1, 16, 16, 1)
    assert decoder.signature.params is None
    # registry.max_images, for the server.
    for logged in (info, decoder):
        assert logged.flavors["python_function"]["config"] == {"max_images": 512}
    model = mlflow.pyfunc.load_model(f"runs:/{version.run_id}/vae")
    assert model.predict(np.zeros((1, 16, 16, 1), dtype=np.uint8)).shape == (1, 16, 16, 1)
    main(
        [
            "generate",
            "--model",
            f"runs:/{version.run_id}/vae",
            "-n",
            "4",
            "--out",
            str(workspace.root / "runs.png"),
        ]
    )
    assert (workspace.root / "runs.png").is_file()

    assert "**vae**: vae_conv (filters [4, 8], z_dim 4)" in version.description
    assert (
        "Data: lfw, 16x16 grey (crop center, resample bicubic); 10 epochs, batch 64, lr 0.001; "
        "seed 0 of 1 replicate." in version.description
    )
    assert "recon.mse 0.05, recon.psnr 20" in version.description
    registered = client.get_registered_model("vaelab-vae")
    assert registered.description.startswith("vaelab variant `vae`; `@champion` is version 1:")
    assert version.description in registered.description
