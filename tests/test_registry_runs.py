"""What register logs for an MLflow user: the training runs' evaluation, figures, history and
config (found by tag, once per content), the compare report, the logged model's name and
signature, and the registry's descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.trained import (
    Workspace,
    save_variant,
    tiny_params,
    tracking_server,
    workspace_fixture,
    write_eval,
)
from vaelab.cli import main
from vaelab.models.saved import weights_md5
from vaelab.registry.register import run_register
from vaelab.tracking import experiment_id

workspace = pytest.fixture(workspace_fixture)


def workspace_on(ws, uri):
    """``ws`` with its store at ``uri`` (a tracking server)."""
    return Workspace(root=ws.root, models=ws.models, metrics=ws.metrics, uri=uri)


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


def write_detail(ws, mse, seeds=None):
    """metrics/detail/eval/vae.json (the full evaluation, which register prefers), with each
    seed's own ``recon.mse`` of ``seeds`` under ``seeds.<seed>``."""
    path = write_eval(
        ws.metrics,
        "vae",
        mse,
        seeds=seeds,
        sd={"recon": {"mse": 0.002}},
        intervals={"recon.mse": {"mean": mse, "low": 0.01, "high": 0.09}},
        notes={"x": "words"},
    )
    # Every number of a real evaluation is in the file; only the headline ones become metrics.
    payload = json.loads(path.read_text())
    payload["radius"] = {"laplacian_var": {f"r{i}": i / 10 for i in range(40)}}
    path.write_text(json.dumps(payload))


def artifacts(client, run_id, folder=None):
    found = []
    for item in client.list_artifacts(run_id, folder):
        found += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


# What "a few dozen at most" means for the counts below.
FEW_DOZEN = 40
OTHER_DATA = ("data.celeba.", "data.mnist.", "data.cifar10.", "data.download.")


def two_seeds(ws):
    """vae with replicates 0 and 1, each with its finished training run, its own evaluation
    and figures; ``{seed: run id}``."""
    folder = save_variant(ws.models, "vae", seeds=(0, 1))
    runs = {
        seed: training_run(ws, weights_md5(folder / f"seed{seed}"), seed=str(seed))
        for seed in (0, 1)
    }
    write_detail(ws, 0.05, seeds={0: 0.04, 1: 0.06})
    (ws.metrics / "history").mkdir(parents=True)
    (ws.metrics / "history" / "vae.csv").write_text("epoch,step,val_loss\n1,5,2.0\n")
    for seed in (0, 1):
        png(ws.root / "reports" / "vae" / f"seed{seed}" / "samples.png", 10 + seed)
        png(ws.root / "reports" / "vae" / f"seed{seed}" / "radius.png", 20 + seed)
    return runs


def test_each_training_run_gets_its_own_evaluation_once(workspace):
    runs = two_seeds(workspace)
    decoy = training_run(workspace, "f" * 32)  # other weights: left alone

    vae = register(workspace)["variants"]["vae"]
    assert vae["metric"] == 0.05 and vae["train_runs"] == {"0": runs[0], "1": runs[1]}
    client = workspace.client()
    for seed, mse in ((0, 0.04), (1, 0.06)):
        run = client.get_run(runs[seed])
        metrics = run.data.metrics
        # Its own numbers, not the variant's mean: the seeds differ in MLflow.
        sharp = metrics["eval.blur.laplacian_var.recon"]
        assert metrics["eval.recon.mse"] == mse and sharp == 0.01 + seed / 1000
        assert "eval.recon.psnr" not in metrics  # no headline number: in the JSON artifact
        assert len(metrics) <= FEW_DOZEN and "step" not in metrics
        assert not [key for key in metrics if key.startswith(("eval.sd.", "eval.radius"))]
        assert artifacts(client, runs[seed]) == [
            "config/config.json",
            f"evaluation/vae-seed{seed}.json",
            "figures/radius.png",
            "figures/samples.png",
            "history/vae.csv",
        ]
        own = client.download_artifacts(runs[seed], f"evaluation/vae-seed{seed}.json")
        document = json.loads(Path(own).read_text())
        assert document["seed"] == seed and document["recon"]["mse"] == mse
        assert document["notes"] == {"collapse": f"seed {seed}'s own words"}
        assert "evaluated_on" in document and "intervals" not in document
        figure = client.download_artifacts(runs[seed], "figures/samples.png")
        assert Image.open(figure).getpixel((0, 0)) == 10 + seed
        assert len(run.data.tags["logged_md5"]) == 32
    assert client.get_run(decoy).data.metrics == {} and artifacts(client, decoy) == []

    register(workspace)  # nothing changed: nothing logged again
    assert [m.value for m in client.get_metric_history(runs[0], "eval.recon.mse")] == [0.04]

    write_detail(workspace, 0.045, seeds={0: 0.03, 1: 0.06})  # evaluate reran: new numbers
    register(workspace)
    assert [m.value for m in client.get_metric_history(runs[0], "eval.recon.mse")] == [0.04, 0.03]
    assert client.get_run(runs[0]).data.metrics["eval.recon.mse"] == 0.03


def test_the_variant_run_holds_the_numbers_over_seeds_with_the_seeds_nested_under_it(workspace):
    runs = two_seeds(workspace)
    vae = register(workspace)["variants"]["vae"]
    client = workspace.client()
    variant = client.get_run(vae["variant_run"])
    assert variant.info.run_name == "vae" and variant.info.status == "FINISHED"
    assert variant.data.tags["stage"] == "variant" and "git_commit" in variant.data.tags
    metrics = variant.data.metrics
    assert metrics["eval.recon.mse"] == 0.05 and metrics["eval.recon.mse.sd"] == 0.002
    assert metrics["eval.recon.mse.low"] == 0.01 and metrics["eval.recon.mse.high"] == 0.09
    assert len(metrics) <= FEW_DOZEN and not [k for k in metrics if "radius" in k]
    assert artifacts(client, variant.info.run_id) == ["evaluation/vae.json"]
    params = variant.data.params
    assert params["model.arch"] == "vae_conv" and params["data.dataset"] == "lfw"
    assert not [key for key in params if key.startswith(OTHER_DATA)]
    for run_id in runs.values():
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == vae["variant_run"]

    assert register(workspace)["variants"]["vae"]["variant_run"] == vae["variant_run"]
    exp = client.get_experiment_by_name("vaelab").experiment_id
    assert len(client.search_runs([exp], filter_string="tags.stage = 'variant'")) == 1

    write_detail(workspace, 0.045, seeds={0: 0.03, 1: 0.06})  # a new evaluation, a new run
    again = register(workspace)["variants"]["vae"]["variant_run"]
    assert again != vae["variant_run"] and client.get_run(again).data.metrics[
        "eval.recon.mse"
    ] == pytest.approx(0.045)
    for run_id in runs.values():
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == again


def test_a_version_comes_from_the_training_run_of_its_weights(workspace):
    runs = two_seeds(workspace)
    register(workspace)
    client = workspace.client()
    version = client.get_model_version("vaelab-vae", "1")
    # Its source is the first replicate's training run, which made the weights it holds...
    assert version.run_id == runs[0] and version.tags["train_run_id"] == runs[0]
    # ...and that run lists it (the "Registered models" of its run page), with its logged model.
    (listed,) = client.search_model_versions(f"run_id = '{runs[0]}'")
    assert (listed.name, int(listed.version)) == ("vaelab-vae", 1)
    exp = client.get_experiment_by_name("vaelab").experiment_id
    logged = client.search_logged_models([exp], filter_string=f"source_run_id = '{runs[0]}'")
    assert sorted(m.name for m in logged) == ["vae", "vae-decoder"]
    run = client.get_run(runs[0])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "train"
    assert not client.search_runs([exp], filter_string="tags.stage = 'register'")
    # A few dozen tags: provenance, fingerprint, the headline numbers; the rest is artifacts.
    assert len(version.tags) <= FEW_DOZEN, sorted(version.tags)
    assert float(version.tags["metric.recon.mse"]) == 0.05
    assert not [key for key in version.tags if key.startswith("metric.radius")]
    assert "evaluation/" in version.description

    again = register(workspace)["variants"]["vae"]  # unchanged: nothing new
    assert again["registered"] is False and again["version"] == 1
    assert len(client.search_model_versions("name='vaelab-vae'")) == 1


def test_a_reused_version_with_hundreds_of_metric_tags_keeps_the_headline_ones(workspace):
    save_variant(workspace.models, "vae")
    write_detail(workspace, 0.05)
    register(workspace)
    client = workspace.client()
    for i in range(60):  # as versions registered before were tagged: every number
        client.set_model_version_tag("vaelab-vae", "1", f"metric.radius.laplacian_var.r{i}", "1")
    assert len(client.get_model_version("vaelab-vae", "1").tags) > 60

    again = register(workspace)["variants"]["vae"]
    assert again["registered"] is False and again["aliases"]["champion"] == 1
    tags = client.get_model_version("vaelab-vae", "1").tags
    assert len(tags) <= FEW_DOZEN and float(tags["metric.recon.mse"]) == 0.05


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


# A real `mlflow server` (about 10 s, most of it its start): the training run reopened over
# HTTP takes the models, and the version's source is that run.
def test_on_a_real_tracking_server_the_version_comes_from_its_training_run(
    workspace, tmp_path_factory, monkeypatch
):
    import mlflow
    from mlflow import MlflowClient

    with tracking_server(workspace.root / "server", tmp_path_factory) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        remote = workspace_on(workspace, server.url)
        runs = two_seeds(remote)
        vae = register(remote)["variants"]["vae"]
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        version = client.get_model_version("vaelab-vae", "1")
        assert version.run_id == runs[0] and len(version.tags) <= FEW_DOZEN
        assert [int(v.version) for v in client.search_model_versions(f"run_id = '{runs[0]}'")] == [
            1
        ]
        mse = {s: client.get_run(runs[s]).data.metrics["eval.recon.mse"] for s in (0, 1)}
        assert mse == {0: 0.04, 1: 0.06}
        for run_id in runs.values():
            run = client.get_run(run_id)
            assert run.info.status == "FINISHED"
            assert run.data.tags["mlflow.parentRunId"] == vae["variant_run"]
        model = mlflow.pyfunc.load_model("models:/vaelab-vae@champion")
        assert model.predict(np.zeros((1, 16, 16, 1), dtype=np.uint8)).shape == (1, 16, 16, 1)
