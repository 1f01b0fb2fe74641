"""train.portable_kernels: every stage pins torch's, oneDNN's, MKL's, OpenBLAS's and numpy's
CPU kernels to AVX2 before they load, records it, and a change of the setting retrains."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.kernels import PINS, in_force, pin, pinnable
from vaelab.train.train import run_train

x86_only = pytest.mark.skipif(not pinnable(), reason="the kernel pins exist on x86-64 only")


def python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose environment holds none of the pins."""
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@x86_only
def test_pinning_before_torch_loads_gives_every_library_avx2():
    done = python(
        "import json; from vaelab.kernels import pin, in_force; pin(True)\n"
        "import numpy, torch\n"
        "features = numpy._core._multiarray_umath.__cpu_features__\n"
        "print(json.dumps({'aten': torch.backends.cpu.get_cpu_capability(),\n"
        "  'numpy_avx512': features.get('X86_V4', False), 'in_force': in_force()}))"
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {"aten": "AVX2", "numpy_avx512": False, "in_force": PINS}


@x86_only
def test_pinning_after_torch_loaded_is_refused_not_silently_ignored():
    done = python("import torch\nfrom vaelab.kernels import pin\npin(True)")
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("RuntimeError: kernels.pin called after ") and "torch" in message
    assert "ATEN_CPU_CAPABILITY" in message


def test_not_portable_sets_nothing():
    before = dict(os.environ)
    assert pin(False) == {} and dict(os.environ) == before


@x86_only
def test_the_setting_is_recorded_and_a_change_retrains(tmp_path, make_params, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    base = make_params()
    run_download(base, raw_root=tmp_path / "raw")
    run_prepare(
        base,
        raw_root=tmp_path / "raw",
        out_dir=tmp_path / "prepared",
        metrics_path=tmp_path / "data.json",
        progress=False,
    )
    model = {"tiny_ae": {"arch": "vae_conv", "filters": [8], "z_dim": 4, "variational": False}}

    def train(portable: bool) -> dict:
        params = make_params(
            {"train": {"epochs": 1, "portable_kernels": portable}, "models": model}
        )
        return run_train(
            params,
            "tiny_ae",
            prepared=tmp_path / "prepared",
            models_root=tmp_path / "models",
            metrics_root=tmp_path / "metrics",
            progress=False,
        )

    assert train(True)["kernels"] == in_force() == PINS
    caplog.set_level(logging.INFO, logger="vaelab.checkpoint")
    train(True)  # the complete checkpoint is resumed: nothing to say
    assert "made with another config" not in caplog.text
    train(False)  # another key: the checkpoint is not resumed
    assert "made with another config; starting afresh" in caplog.text
