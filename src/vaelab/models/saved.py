"""A trained variant's folder, ``models/<variant>/``: the one module that knows its files.

``models/<variant>/`` holds one replicate per training seed, ``seed<k>/`` (``train.seeds``
of them, seeds ``seed``, ``seed + 1``, …), and each replicate folder holds:

- ``model.pt``: the state dict, tensors only (loaded ``weights_only=True``: no pickled code);
- ``config.json``: :class:`SavedConfig`, everything needed to rebuild the model and to
  prepare new images the way its training images were prepared;
- ``latent_gmm.pt``, where ``train.gmm`` fitted one: the ex-post Gaussian mixture over the
  training codes (:class:`~vaelab.models.latent_gmm.LatentGMM`: three float64 tensors, loaded
  ``weights_only=True`` too). Folders without it load as before (:func:`load_gmm` gives None).

Nothing else: identical weights (and mixture) make an identical folder, so its DVC hash changes
only when the model does. The MLflow run that trained a replicate is tagged with the md5 of
its ``model.pt`` and looked up by it (:mod:`vaelab.tracking`); folders written before
that may still hold an ``mlflow.json``, which nothing reads.

:func:`save_replicates` writes a variant's folder at once (a killed writer leaves the old
one), :func:`save_trained` one model's folder; :func:`load_trained` rebuilds a model and
:func:`resolve` finds the model a variant folder stands for (its first seed). Everything else
(evaluate, the registry, the pyfunc, the CLI, the tests) goes through these functions; Pythae's
``save`` / ``load_from_folder`` and diffusers' ``save_pretrained`` / ``from_pretrained`` are the
pattern.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from vaelab.config.data_config import DataConfig
from vaelab.config.model_config import ModelConfig
from vaelab.config.section import Section
from vaelab.config.train_config import TrainConfig
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory
from vaelab.io.hashing import md5sum
from vaelab.io.json_files import write_json
from vaelab.models.interface import Autoencoder
from vaelab.models.latent_gmm import LatentGMM
from vaelab.models.zoo import build_model

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
GMM_FILE = "latent_gmm.pt"

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
        if (
            isinstance(raw, dict)
            and "format_version" not in raw
            and isinstance(raw.get("data"), dict)
        ):
            raw = {**raw, "format_version": 1, "data": {"resample": "lanczos", **raw["data"]}}
        return raw


REPLICATE_PREFIX = "seed"


def replicate_folder(variant_folder: Path, seed: int) -> Path:
    """``models/<variant>/seed<seed>/``: the model trained with ``seed``."""
    return variant_folder / f"{REPLICATE_PREFIX}{seed}"


def replicates(variant_folder: Path) -> list[tuple[int, Path]]:
    """The ``(seed, folder)`` of every saved replicate in ``variant_folder``, by seed."""
    found = []
    if variant_folder.is_dir():
        for child in variant_folder.iterdir():
            number = child.name.removeprefix(REPLICATE_PREFIX)
            if child.name.startswith(REPLICATE_PREFIX) and number.isdigit() and is_saved(child):
                found.append((int(number), child))
    return sorted(found)


def resolve(folder: Path) -> Path:
    """The model folder ``folder`` stands for: itself when it holds a model, else its
    first-seed replicate. A UserError when it holds neither."""
    if is_saved(folder):
        return folder
    found = replicates(folder)
    if not found:
        raise UserError(
            f"{folder}: holds no trained vaelab model "
            f"(no {WEIGHTS_FILE} + {CONFIG_FILE}, no seed<k>/)"
        )
    return found[0][1]


def is_saved(folder: Path) -> bool:
    """Whether ``folder`` holds a trained variant (weights and config)."""
    return (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()


def require_replicates(variant_folder: Path, variant: str) -> list[tuple[int, Path]]:
    """The replicates of a variant, or a UserError saying how to make them."""
    found = replicates(variant_folder)
    if not found:
        raise UserError(
            f"{variant_folder}: no trained model; run `dvc repro train@{variant}` first"
        )
    return found


def weights_file(folder: Path) -> Path:
    """The state-dict file (the registry logs it as an artifact)."""
    return folder / WEIGHTS_FILE


def config_file(folder: Path) -> Path:
    """The config.json file (the registry logs it as an artifact)."""
    return folder / CONFIG_FILE


def weights_md5(folder: Path) -> str:
    """md5 of the weights: the identity of a trained model (registry versions are keyed by it)."""
    return md5sum(weights_file(folder))


@dataclass(frozen=True)
class Trained:
    """One trained model as it is saved: weights, config and, when one was fitted, its
    ex-post GMM."""

    model: torch.nn.Module
    config: SavedConfig
    gmm: LatentGMM | None = None


def save_trained(
    folder: Path, model: torch.nn.Module, config: SavedConfig, gmm: LatentGMM | None = None
) -> None:
    """Write one model's ``folder`` (weights on the CPU, config.json, the GMM if any) in one
    rename."""
    with atomic_directory(folder) as staging:
        _write_model(staging, Trained(model, config, gmm))


def save_replicates(variant_folder: Path, trained: list[Trained]) -> None:
    """Write ``models/<variant>/`` with one ``seed<k>/`` per model, replacing the old folder
    in one rename."""
    with atomic_directory(variant_folder) as staging:
        for item in trained:
            folder = replicate_folder(staging, item.config.seed)
            folder.mkdir()
            _write_model(folder, item)


def _write_model(folder: Path, item: Trained) -> None:
    torch.save(
        {k: v.detach().cpu() for k, v in item.model.state_dict().items()}, folder / WEIGHTS_FILE
    )
    write_json(folder / CONFIG_FILE, item.config.model_dump(mode="json"))
    if item.gmm is not None:
        torch.save(
            {name: value.contiguous() for name, value in item.gmm.state_dict().items()},
            folder / GMM_FILE,
        )


def load_config(config_path: Path) -> SavedConfig:
    """Read and validate a config.json; a UserError says to retrain when it is unusable."""
    try:
        return SavedConfig.model_validate(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as err:
        raise UserError(
            f"{config_path}: not a usable vaelab model config ({_problems(err)}); retrain the model"
        ) from None


def load_files(weights_path: Path, config_path: Path) -> tuple[Autoencoder, SavedConfig]:
    """The model from its two files, on the CPU in eval mode (weights only, strict)."""
    config = load_config(config_path)
    model = build_model(config.model, image_size=config.image_size, channels=config.channels)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval(), config


def load_trained(folder: Path) -> tuple[Autoencoder, SavedConfig]:
    """Rebuild the trained variant in ``folder``: the model (CPU, eval mode) and its config."""
    return load_files(weights_file(folder), config_file(folder))


def gmm_file(folder: Path) -> Path:
    """The ex-post GMM's file (absent when none was fitted)."""
    return folder / GMM_FILE


def load_gmm(folder: Path) -> LatentGMM | None:
    """The ex-post GMM saved with the model in ``folder`` (CPU, weights only), or None when the
    folder has none (trained before the mixture existed, or with ``train.gmm.components: 0``)."""
    path = gmm_file(folder)
    if not path.is_file():
        return None
    try:
        return LatentGMM.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise UserError(f"{path}: not a usable latent GMM ({err}); retrain the model") from None


def _problems(err: json.JSONDecodeError | ValidationError) -> str:
    """What is wrong, on one line."""
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON: {err}"
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors()
    )


def check_fits(config: SavedConfig, images: np.ndarray, where: str) -> None:
    """The model was trained on images of this size and channel count, or a UserError says to
    retrain."""
    trained = (config.image_size, config.image_size, config.channels)
    if tuple(images.shape[1:]) != trained:
        raise UserError(
            f"{where}: trained on {trained[0]}x{trained[1]}x{trained[2]} images "
            f"but the prepared data is {'x'.join(map(str, images.shape[1:]))}; "
            "retrain it (`dvc repro`)"
        )
