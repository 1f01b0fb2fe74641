"""One tiny config that every test starts from and overrides (1 worker, few images, tmp paths)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vaelab.config import Params, params_from_dict
from vaelab.kernels import pin

# The stages pin their CPU kernels before torch and numpy load (vaelab.kernels); so does the
# test process (nothing above imports either), so that a stage called in-process computes
# what its script computes.
pin(portable=True)

TINY: dict[str, Any] = {
    "seed": 0,
    "data": {
        "dataset": "lfw",
        "image_size": 16,
        "channels": 1,
        "workers": 1,
        "split": {"method": "random", "val": 0.1, "test": 0.1},
        "crop": {"method": "center", "size": None},
        "download": {"retries": 1, "backoff": 0.0, "timeout": 5.0},
    },
    # A checkpoint at every epoch end (the default waits 30 s between them): tests kill
    # trainings at chosen epochs and pin where they resume.
    "train": {"checkpoint_seconds": 0},
}


def deep_merge(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def tiny_params_dict(tmp_path: Path) -> dict[str, Any]:
    """The tiny config as a plain dict, with the download cache under tmp_path."""
    return deep_merge(TINY, {"data": {"download": {"cache_dir": str(tmp_path / "downloads")}}})


@pytest.fixture
def make_params(tiny_params_dict: dict[str, Any]) -> Callable[..., Params]:
    """``make_params({"data": {...}})`` → validated Params: the tiny config plus overrides."""

    def make(overrides: dict[str, Any] | None = None) -> Params:
        return params_from_dict(deep_merge(tiny_params_dict, overrides or {}))

    return make


@pytest.fixture
def torch_globals():
    """Put back what :func:`vaelab.runtime.deterministic` (or a test) changes for the whole
    process."""
    import torch

    threads = torch.get_num_threads()
    mode = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(mode[0], warn_only=mode[1])


@pytest.fixture(autouse=True)
def _own_torch_hub(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's hub cache is an empty folder of the test's (TORCH_HOME, which subprocesses inherit):
    evaluate looks there for FID's Inception weights, and no test depends on what a machine
    holds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` run only where torch sees a CUDA device (never in CI)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
