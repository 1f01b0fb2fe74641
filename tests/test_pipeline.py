"""`dvc repro` end to end in a temporary git repository, on the embedded lfw default."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support.project import copy_project, small_pipeline
from tests.support.project import run as _run
from vaelab.io.json_files import flatten


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


@pytest.mark.slow
def test_dvc_repro_prepare_then_nothing_to_do(repo: Path):
    first = _run([sys.executable, "-m", "dvc", "repro", "prepare"], repo)
    assert "Running stage 'download'" in first.stdout and "Running stage 'prepare'" in first.stdout

    images = np.load(repo / "data" / "prepared" / "images.npy")
    assert images.shape == (200, 16, 16, 1) and images.dtype == np.uint8
    index = pd.read_csv(repo / "data" / "prepared" / "index.csv")
    assert index["split"].value_counts().to_dict() == {
        "ood": 100,
        "train": 65,
        "val": 10,
        "test": 25,
    }
    assert (index["face"] == 0).sum() == 100
    metrics = json.loads((repo / "metrics" / "detail" / "data.json").read_text())
    assert metrics["splits"] == {"train": 65, "val": 10, "test": 25, "ood": 100}
    manifest = json.loads((repo / "data" / "raw" / "lfw" / "MANIFEST.json").read_text())
    assert [f["file"] for f in manifest["files"]] == ["lfw_subset.npy"]

    second = _run([sys.executable, "-m", "dvc", "repro", "prepare"], repo)
    assert "Running stage" not in second.stdout
    status = _run([sys.executable, "-m", "dvc", "status", "prepare"], repo)
    assert "up to date" in status.stdout

    # A params edit that prepare reads reruns prepare only, not download.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["image_size"] = 8
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _run([sys.executable, "-m", "dvc", "repro", "prepare"], repo)
    assert (
        "Running stage 'prepare'" in third.stdout and "Running stage 'download'" not in third.stdout
    )
    assert np.load(repo / "data" / "prepared" / "images.npy").shape == (200, 8, 8, 1)


@pytest.mark.slow
def test_dvc_repro_trains_variants_and_reruns_only_the_edited_one(repo: Path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    small_pipeline(params, epochs=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert (
        "Running stage 'train@small_ae'" in first.stdout
        and "Running stage 'train@small_vae'" in first.stdout
    )
    for stage in ("evaluate@small_ae", "evaluate@small_vae", "chain", "compare"):
        assert f"Running stage '{stage}'" in first.stdout
    compare = json.loads((repo / "metrics" / "detail" / "compare.json").read_text())
    assert set(compare["variants"]) == {"small_ae", "small_vae"}
    assert "| small_vae " in (repo / "reports" / "compare.md").read_text()
    assert (repo / "reports" / "compare" / "reconstructions.png").is_file()
    shown = json.loads(
        _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo).stdout
    )
    eval_metrics = shown[""]["data"]["metrics/eval/small_vae.json"]["data"]
    assert set(eval_metrics) == {"mse", "sharp", "sample_sharp", "active", "elbo"}
    # DVC's metrics are a few numbers per file: no text, no timings, no spreads or intervals.
    for path, entry in shown[""]["data"].items():
        leaves = flatten(entry["data"], keep_empty=False)
        assert len(leaves) <= 12, path
        assert all(isinstance(v, int | float) for v in leaves.values()), path
        assert not any(
            k.split(".")[-1] in ("seconds", "images_per_second", "sd") for k in leaves
        ), path
    assert "metrics/registry.json" not in shown[""]["data"]
    history_plot = json.loads(
        _run(
            [
                sys.executable,
                "-m",
                "dvc",
                "plots",
                "show",
                "--json",
                "metrics/history/small_vae.csv",
            ],
            repo,
        ).stdout
    )
    (rendered,) = history_plot["data"]["metrics/history/small_vae.csv"]
    rendered["content"].pop("data")
    assert '"y": {"field": "val_loss"' in json.dumps(
        rendered["content"]
    )  # a loss curve, not seconds per epoch
    plots = _run([sys.executable, "-m", "dvc", "plots", "show", "--json", "val_recon"], repo).stdout
    assert '"variant"' in plots and "small_vae" in plots
    for variant in ("small_ae", "small_vae"):
        assert (repo / "models" / variant / "seed0" / "model.pt").is_file()
        metrics = json.loads(
            (repo / "metrics" / "detail" / "train" / f"{variant}.json").read_text()
        )
        assert metrics["epochs"] == 1
        assert (
            json.loads((repo / "metrics" / "timing" / "train" / f"{variant}.json").read_text())[
                "device"
            ]
            == "cpu"
        )
        history = pd.read_csv(repo / "metrics" / "history" / f"{variant}.csv")
        assert list(history["epoch"]) == [1]

    params["models"]["small_vae"]["z_dim"] = 6
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert "Running stage 'train@small_vae'" in second.stdout
    assert (
        "Running stage 'evaluate@small_vae'" in second.stdout
        and "Running stage 'compare'" in second.stdout
    )
    assert "Running stage 'train@small_ae'" not in second.stdout
    assert "Running stage 'evaluate@small_ae'" not in second.stdout
    assert "Running stage 'prepare'" not in second.stdout

    # A single-VAE run is a supported configuration: with evaluate.chain: null the chain
    # is skipped with its reason on record, and the rest of the pipeline runs.
    del params["models"]["small_ae"]
    params["evaluate"]["chain"] = None
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert (
        "Running stage 'chain'" in third.stdout
        and "Running stage 'train@small_vae'" not in third.stdout
    )
    assert json.loads((repo / "metrics" / "chain.json").read_text()) == {}
    assert "evaluate.chain is null" in (repo / "reports" / "chain" / "README.md").read_text()
    assert set(
        json.loads((repo / "metrics" / "detail" / "compare.json").read_text())["variants"]
    ) == {"small_vae"}
