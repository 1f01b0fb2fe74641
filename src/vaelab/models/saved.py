"""A trained variant's folder, ``models/<variant>/``: the one module that knows its files.

The folder holds:

- ``model.pt``: the state dict, tensors only (loaded ``weights_only=True``: no pickled code);
- ``config.json``: :class:`SavedConfig`, everything needed to rebuild the model and to
  prepare new images the way its training images were prepared;
- ``mlflow.json``: :class:`RunInfo`, the MLflow run that trained it (optional).

:func:`save_trained` writes all of it at once (a killed writer leaves the old folder);
:func:`load_trained` rebuilds the model. Everything else (evaluate, the registry, the
pyfunc, the CLI, the tests) goes through these functions; Pythae's ``save`` /
``load_from_folder`` and diffusers' ``save_pretrained`` / ``from_pretrained`` are the pattern.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError, model_validator

from vaelab.config.base import Section
from vaelab.config.data import DataConfig
from vaelab.config.models import ModelConfig
from vaelab.config.train import TrainConfig
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory
from vaelab.io.hashing import md5sum
from vaelab.models.base import Autoencoder
from vaelab.models.zoo import build_model

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
RUN_FILE = "mlflow.json"

# Bump when config.json changes in a way older readers cannot follow, and teach
# SavedConfig._upgrade to read the older versions.
FORMAT_VERSION = 1


class SavedConfig(Section):
    """``config.json``: the variant's entry and the data and training settings it was made with."""

    format_version: int = Field(FORMAT_VERSION, ge=1, le=FORMAT_VERSION)
    variant: str
    model: ModelConfig
    image_size: int = Field(gt=0)
    channels: int = Field(gt=0)
    seed: int
    train: TrainConfig
    trainable_params: int = Field(ge=0)
    # How the images were made, so that new images can be cropped and resized the same way.
    data: DataConfig

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, raw: Any) -> Any:
        # Folders written before config.json carried a format version were prepared before
        # data.resample existed, with PIL's Lanczos: say so rather than take today's default.
        if isinstance(raw, dict) and "format_version" not in raw and isinstance(raw.get("data"), dict):
            raw = {**raw, "format_version": 1, "data": {"resample": "lanczos", **raw["data"]}}
        return raw


class RunInfo(Section):
    """``mlflow.json``: where the training run of this model lives."""

    run_id: str
    tracking_uri: str
    experiment: str


def is_saved(folder: Path) -> bool:
    """Whether ``folder`` holds a trained variant (weights and config)."""
    return (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()


def require_saved(folder: Path, variant: str) -> None:
    """A UserError saying how to make ``folder`` unless it holds a trained variant."""
    for needed in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / needed).is_file():
            raise UserError(f"{folder / needed}: not found; run `dvc repro train@{variant}` first")


def weights_file(folder: Path) -> Path:
    """The state-dict file (the registry logs it as an artifact)."""
    return folder / WEIGHTS_FILE


def config_file(folder: Path) -> Path:
    """The config.json file (the registry logs it as an artifact)."""
    return folder / CONFIG_FILE


def weights_md5(folder: Path) -> str:
    """md5 of the weights: the identity of a trained model (registry versions are keyed by it)."""
    return md5sum(weights_file(folder))


def save_trained(folder: Path, model: torch.nn.Module, config: SavedConfig, run: RunInfo | None = None) -> None:
    """Write ``folder`` (weights on the CPU, config.json, mlflow.json) in one rename."""
    with atomic_directory(folder) as staging:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / WEIGHTS_FILE)
        _write_json(staging / CONFIG_FILE, config.model_dump(mode="json"))
        if run is not None:
            _write_json(staging / RUN_FILE, run.model_dump(mode="json"))


def load_config(config_path: Path) -> SavedConfig:
    """Read and validate a config.json; a UserError says to retrain when it is unusable."""
    try:
        return SavedConfig.model_validate(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as err:
        raise UserError(f"{config_path}: not a usable vaelab model config ({err}); retrain the model") from None


def load_files(weights_path: Path, config_path: Path) -> tuple[Autoencoder, SavedConfig]:
    """The model from its two files, on the CPU in eval mode (weights only, strict)."""
    config = load_config(config_path)
    model = build_model(config.model, image_size=config.image_size, channels=config.channels)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval(), config


def load_trained(folder: Path) -> tuple[Autoencoder, SavedConfig]:
    """Rebuild the trained variant in ``folder``: the model (CPU, eval mode) and its config."""
    return load_files(weights_file(folder), config_file(folder))


def load_run(folder: Path) -> RunInfo | None:
    """The training run recorded in ``folder``, or None when it has none."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        return RunInfo.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as err:
        raise UserError(f"{path}: not a usable MLflow run record ({err}); retrain the model") from None


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
