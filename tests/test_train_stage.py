"""The train@<variant> runner: outputs, weights-only reload and the MLflow run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.errors import UserError
from vaelab.kernels import in_force, pinnable
from vaelab.models.saved import load_trained, weights_md5
from vaelab.train.train import run_train


@pytest.fixture
def prepared(tmp_path, make_params):
    params = make_params()
    run_download(params, raw_root=tmp_path / "raw")
    run_prepare(
        params,
        raw_root=tmp_path / "raw",
        out_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
        progress=False,
    )
    return tmp_path / "prepared"


def test_train_writes_model_metrics_history_and_an_mlflow_run(
    tmp_path, make_params, prepared, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params = make_params(
        {
            "train": {"epochs": 2, "batch_size": 32},
            "models": {
                "tiny_vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4, "kl_weight": 2.0}
            },
        }
    )
    metrics = run_train(
        params,
        "tiny_vae",
        prepared=prepared,
        models_root=tmp_path / "models",
        metrics_root=tmp_path / "metrics",
        progress=False,
    )
    assert metrics["epochs"] == 2 and metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert set(metrics["train"]) >= {"loss", "recon", "kl"} and metrics["trainable_params"] > 0
    # DVC metrics: the last validation losses; the counts in the detail, the timings apart.
    metrics_dir = tmp_path / "metrics"
    assert json.loads((metrics_dir / "train" / "tiny_vae.json").read_text()) == {
        "val": {key: metrics["val"][key] for key in ("loss", "recon", "kl")}
    }
    detail = json.loads((metrics_dir / "detail" / "train" / "tiny_vae.json").read_text())
    assert detail["epochs"] == 2 and "seconds" not in detail and "device" not in detail
    timing = json.loads((metrics_dir / "timing" / "train" / "tiny_vae.json").read_text())
    assert set(timing) == {"seconds", "images_per_second", "device", "precision", "kernels"}
    # The test process pins its kernels as every stage does (conftest): the record says so.
    assert timing["kernels"] == in_force() and (timing["kernels"] or not pinnable())

    history = pd.read_csv(tmp_path / "metrics" / "history" / "tiny_vae.csv")
    assert list(history["epoch"]) == [1, 2] and "val_loss" in history.columns

    model, config = load_trained(tmp_path / "models" / "tiny_vae" / "seed0")
    assert config.image_size == 16 and config.channels == 1 and config.variant == "tiny_vae"
    with torch.no_grad():
        assert model(torch.rand(2, 1, 16, 16))["recon"].shape == (2, 1, 16, 16)

    from mlflow.tracking import MlflowClient

    # No run id in the model folder: the run is found by the md5 of the weights it saved.
    assert sorted(p.name for p in (tmp_path / "models" / "tiny_vae" / "seed0").iterdir()) == [
        "config.json",
        "latent_gmm.pt",
        "model.pt",
    ]
    md5 = weights_md5(tmp_path / "models" / "tiny_vae" / "seed0")
    (run,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("vaelab").experiment_id],
        filter_string=f"tags.model_md5 = '{md5}' and tags.stage = 'train'",
    )
    run_id = run.info.run_id
    assert run.data.params["model.z_dim"] == "4" and run.data.params["train.epochs"] == "2"
    assert run.data.tags["variant"] == "tiny_vae" and run.data.tags["seed"] == "0"
    assert len(run.data.tags["data_md5"]) == 32
    # Outside git and outside a DVC experiment: provenance says so rather than guessing.
    assert run.data.tags["git_commit"] == "unknown" and run.data.tags["git_dirty"] == "unknown"
    assert "dvc_exp_name" not in run.data.tags
    losses = MlflowClient().get_metric_history(run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2]


def test_an_unknown_variant_is_a_user_error(make_params, prepared):
    with pytest.raises(UserError, match=r"not in params\.yaml models"):
        run_train(make_params(), "nope", prepared=prepared)


def test_checkpoints_are_keyed_by_the_code_too(monkeypatch, tmp_path):
    from vaelab.train import train as run

    before = run.code_fingerprint()
    assert before == run.code_fingerprint() and len(before) == 32
    source = Path(run.__file__)
    original = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: b"edited" if self == source else original(self)
    )
    assert run.code_fingerprint() != before


def test_every_seed_is_a_replicate_and_the_history_is_their_mean(
    tmp_path, make_params, prepared, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from vaelab.models.saved import replicates

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params = make_params(
        {
            "seed": 4,
            "train": {"epochs": 2, "batch_size": 32, "seeds": 2, "hflip": True},
            "models": {"v": {"arch": "vae_conv", "filters": [8], "z_dim": 3}},
        }
    )
    metrics = run_train(
        params,
        "v",
        prepared=prepared,
        models_root=tmp_path / "models",
        metrics_root=tmp_path / "metrics",
        progress=False,
    )
    found = replicates(tmp_path / "models" / "v")
    assert [seed for seed, _folder in found] == [4, 5] and metrics["seeds"] == 2
    first, second = (load_trained(folder) for _seed, folder in found)
    assert first[1].seed == 4 and second[1].seed == 5
    assert not torch.equal(
        first[0].state_dict()["decoder.0.weight"], second[0].state_dict()["decoder.0.weight"]
    )
    assert (tmp_path / "checkpoints" / "v" / "seed4.pt").is_file() and (
        tmp_path / "checkpoints" / "v" / "seed5.pt"
    ).is_file()

    runs = {
        run.data.tags["seed"]: run
        for run in MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("vaelab").experiment_id]
        )
    }
    assert set(runs) == {"4", "5"}
    history = pd.read_csv(tmp_path / "metrics" / "history" / "v.csv")
    per_seed = [
        MlflowClient().get_metric_history(runs[s].info.run_id, "val_loss") for s in ("4", "5")
    ]
    expected = [(a.value + b.value) / 2 for a, b in zip(*per_seed, strict=True)]
    assert history["val_loss"].tolist() == pytest.approx(expected)
    assert list(history["epoch"]) == [1, 2] and history["step"].dtype.kind == "i"
    assert metrics["val"]["loss"] == pytest.approx(expected[-1])


def test_a_variant_can_train_for_its_own_number_of_epochs(
    tmp_path, make_params, prepared, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params = make_params(
        {
            "train": {"epochs": 1, "batch_size": 32},
            "models": {
                "slow": {"arch": "vae_conv", "filters": [8], "z_dim": 3, "epochs": 3},
                "quick": {"arch": "ae_pool"},
            },
        }
    )
    roots = {
        "prepared": prepared,
        "models_root": tmp_path / "models",
        "metrics_root": tmp_path / "metrics",
    }
    assert run_train(params, "slow", progress=False, **roots)["epochs"] == 3
    assert run_train(params, "quick", progress=False, **roots)["epochs"] == 1
    _model, config = load_trained(tmp_path / "models" / "slow" / "seed0")
    assert config.train.epochs == 3 and config.model.epochs == 3


def test_identical_weights_make_an_identical_model_folder(
    tmp_path, make_params, prepared, monkeypatch
):
    """models/<variant>/ holds nothing run-specific (no mlflow.json), so two trainings that
    end with the same weights give byte-identical folders: one DVC hash. Each run is tagged
    with the md5 of the weights it saved, which is how the registry finds it."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params = make_params(
        {
            "train": {"epochs": 1, "batch_size": 32},
            "models": {"v": {"arch": "vae_conv", "filters": [4], "z_dim": 2}},
        }
    )
    folders = []
    for attempt in ("a", "b"):
        # No checkpoint left: the second training trains again rather than resuming the first.
        shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)
        run_train(
            params,
            "v",
            prepared=prepared,
            models_root=tmp_path / attempt,
            metrics_root=tmp_path / "metrics",
            progress=False,
        )
        folders.append(tmp_path / attempt / "v")

    def contents(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    first, second = (contents(folder) for folder in folders)
    assert sorted(first) == ["seed0/config.json", "seed0/latent_gmm.pt", "seed0/model.pt"]
    assert first == second
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("vaelab").experiment_id],
        filter_string="tags.stage = 'train'",
    )
    assert len(runs) == 2
    assert {run.data.tags["model_md5"] for run in runs} == {weights_md5(folders[0] / "seed0")}


def test_train_fits_each_replicate_a_gmm_on_its_training_codes(
    tmp_path, make_params, prepared, monkeypatch
):
    from vaelab.data.prepared_data import load_split
    from vaelab.models.latent_gmm import fit_latent_gmm
    from vaelab.models.saved import load_gmm
    from vaelab.train.train import training_codes

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    entry = {"arch": "vae_conv", "filters": [4], "z_dim": 2, "variational": False}
    roots = {
        "prepared": prepared,
        "models_root": tmp_path / "models",
        "metrics_root": tmp_path / "metrics",
        "progress": False,
    }
    params = make_params(
        {
            "train": {"epochs": 1, "batch_size": 32, "seeds": 2, "gmm": {"components": 3}},
            "models": {"ae": entry},
        }
    )
    run_train(params, "ae", **roots)
    train_split = load_split(prepared, "train")
    weights = {}
    for seed in (0, 1):
        folder = tmp_path / "models" / "ae" / f"seed{seed}"
        model, _config = load_trained(folder)
        gmm = load_gmm(folder)
        assert gmm.components == 3 and gmm.dim == 2
        # The training split's codes in eval mode (in train.batch_size batches), fitted with the
        # replicate's seed.
        codes = training_codes(model, train_split, batch_size=32, device=torch.device("cpu"))
        assert codes.shape == (len(train_split), 2) and codes.dtype == np.float64
        expected = fit_latent_gmm(codes, 3, seed)
        for name, value in expected.state_dict().items():
            assert torch.equal(gmm.state_dict()[name], value), (seed, name)
        weights[seed] = (folder / "model.pt").read_bytes()
    assert not torch.equal(
        load_gmm(tmp_path / "models" / "ae" / "seed0").means,
        load_gmm(tmp_path / "models" / "ae" / "seed1").means,
    )

    # The mixture is fitted after training and is no part of the checkpoint's key: without one,
    # the finished checkpoints are taken as they are (the same weights) and no GMM is written.
    run_train(
        make_params(
            {
                "train": {"epochs": 1, "batch_size": 32, "seeds": 2, "gmm": {"components": 0}},
                "models": {"ae": entry},
            }
        ),
        "ae",
        **roots,
    )
    for seed in (0, 1):
        folder = tmp_path / "models" / "ae" / f"seed{seed}"
        assert (folder / "model.pt").read_bytes() == weights[seed] and load_gmm(folder) is None
    # A mixture that cannot be fitted (non-finite codes here) stops the stage with one message.
    from vaelab.train import train as run

    monkeypatch.setattr(run, "training_codes", lambda *args, **kwargs: np.full((4, 2), np.nan))
    with pytest.raises(
        UserError, match=r"ae seed 0: cannot fit train\.gmm's mixture .*not all finite"
    ):
        run_train(params, "ae", **roots)
    monkeypatch.undo()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    # Codes longer than train.gmm.max_dim get none either.
    run_train(
        make_params(
            {
                "train": {"epochs": 1, "batch_size": 32, "gmm": {"max_dim": 1}},
                "models": {"ae": entry},
            }
        ),
        "ae",
        **roots,
    )
    assert load_gmm(tmp_path / "models" / "ae" / "seed0") is None
