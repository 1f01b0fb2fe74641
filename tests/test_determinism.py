"""Training is deterministic on a fixed machine: the same params train the same bytes."""

from __future__ import annotations

import hashlib
import os
import warnings

import pytest
import torch

from tests.test_models import SMALL_CONFIGS, make
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.runtime import deterministic
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


def test_two_trainings_in_one_process_give_the_same_bytes(
    tmp_path, make_params, prepared, monkeypatch, torch_globals
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # A VAE (it draws from its posterior while training), mirrored batches, two seeds, and a
    # pinned thread count; each training in its own folder, so that neither resumes the other.
    params = make_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "seeds": 2, "hflip": True, "threads": 1},
            "models": {"v": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4}},
        }
    )
    torch.use_deterministic_algorithms(False)
    weights = {}
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        with warnings.catch_warnings():
            # An op without a deterministic implementation would warn (warn_only): none may.
            warnings.filterwarnings(
                "error", message=".*does not have a deterministic implementation"
            )
            run_train(
                params,
                "v",
                prepared=prepared,
                models_root=tmp_path / name / "models",
                metrics_root=tmp_path / name / "metrics",
                progress=False,
            )
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        weights[name] = {
            seed: (tmp_path / name / "models" / "v" / f"seed{seed}" / "model.pt") for seed in (0, 1)
        }

    for seed in (0, 1):
        first, second = (weights[name][seed] for name in ("first", "second"))
        assert (
            hashlib.md5(first.read_bytes()).hexdigest()
            == hashlib.md5(second.read_bytes()).hexdigest()
        )
        first_state = torch.load(first, weights_only=True)
        second_state = torch.load(second, weights_only=True)
        assert first_state.keys() == second_state.keys()
        for key in first_state:
            assert torch.equal(first_state[key], second_state[key]), key
    # The two seeds are different trainings, so equal bytes above are not a constant.
    assert weights["first"][0].read_bytes() != weights["first"][1].read_bytes()
    # The curves too, byte for byte (their timings are in metrics/timing/, not in the history).
    first, second = (
        tmp_path / name / "metrics" / "history" / "v.csv" for name in ("first", "second")
    )
    assert first.read_bytes() == second.read_bytes()


def test_deterministic_pins_the_thread_count_and_the_algorithms(torch_globals, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    before = torch.get_num_threads()
    assert deterministic() == before  # None keeps torch's own count
    assert (
        torch.are_deterministic_algorithms_enabled()
        and torch.is_deterministic_algorithms_warn_only_enabled()
    )
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert deterministic(1) == 1 and torch.get_num_threads() == 1


def test_deterministic_leaves_inductor_unimported_unless_the_model_is_compiled():
    """The flag is set on ATen alone (2 s of start-up saved per train stage); torch.compile's
    inductor gets its own deterministic flag only when the training compiles."""
    import subprocess
    import sys

    script = (
        "import sys, torch; from vaelab.runtime import deterministic; "
        "deterministic(compiled={compiled}); "
        "print(torch.are_deterministic_algorithms_enabled(), "
        "torch.is_deterministic_algorithms_warn_only_enabled(), "
        "'torch._inductor.config' in sys.modules and "
        "sys.modules['torch._inductor.config'].deterministic)"
    )
    plain = subprocess.run(
        [sys.executable, "-c", script.format(compiled=False)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    compiled = subprocess.run(
        [sys.executable, "-c", script.format(compiled=True)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert plain == ["True", "True", "False"]  # deterministic, warn-only, inductor never imported
    assert compiled == ["True", "True", "True"]  # and inductor's flag set too


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_every_architecture_trains_under_strict_determinism_on_cpu(name, torch_globals):
    """warn_only is for GPUs: on the CPU no op of any architecture or loss lacks a deterministic
    kernel."""
    torch.use_deterministic_algorithms(True)  # raise, not warn
    model = make(SMALL_CONFIGS[name], 32, 3)
    images = torch.rand(4, 3, 32, 32)
    model.loss(images, model(images))["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
