"""A tiny trained project for tests that run stage scripts in it: LFW-like data prepared,
one VAE variant (one seed, two epochs) trained by ``stages/train.py`` with its own MLflow
store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare

REPO = Path(__file__).resolve().parents[2]


def run_train_stage(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``python [options] stages/train.py vae`` in ``root``, which must succeed."""
    done = subprocess.run(
        [sys.executable, *options, str(REPO / "stages" / "train.py"), "vae"],
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "OMP_NUM_THREADS": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def tiny_trained_project(
    root: Path, tiny_params_dict: dict[str, Any], make_params: Callable[..., Any]
) -> tuple[Path, dict[str, Any]]:
    """``root`` made a project whose variant ``vae`` is trained; with its raw params."""
    from tests.conftest import deep_merge

    raw = deep_merge(
        tiny_params_dict,
        {
            "train": {"epochs": 2, "batch_size": 32, "device": "cpu"},
            "models": {"vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4}},
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = make_params(raw)
    run_download(params, raw_root=root / "data" / "raw")
    run_prepare(
        params,
        raw_root=root / "data" / "raw",
        out_dir=root / "data" / "prepared",
        metrics_path=root / "metrics" / "data.json",
        progress=False,
    )
    run_train_stage(root)
    return root, raw
