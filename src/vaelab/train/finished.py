"""A finished training's outputs, kept beside its checkpoints, so that a train stage with
nothing to do puts them back (the same bytes) in a fraction of a second.

DVC deletes a stage's outputs before it runs the stage: ``dvc repro -f train@<variant>``, or a
rerun after a change that leaves the training as it was, used to import torch, open the MLflow
store, load every replicate's complete checkpoint, fit the ex-post GMMs again with
scikit-learn and write the same files again, 8-10 s for nothing new. When a training stage has
written its outputs, :func:`keep` copies them (``models/<variant>/``, the train metrics, detail,
timing and history files) to ``<train.checkpoint_dir>/<variant>/finished/`` with each file's
md5 and the key of everything they were made from (:func:`outputs_key`). :func:`restore`,
which the stage calls before anything else, copies them back when the key matches and every
md5 checks, importing neither torch, MLflow nor scikit-learn; otherwise the stage runs and
resumes from its checkpoints as before.

The key: the variant's model and training settings (``train:`` with the variant's epochs), the
seeds, ``data:`` and the prepared data's md5, the md5 of every vaelab source file, the versions
of the libraries that compute the bytes, the kernels in force and the MLflow store. A restore
sends nothing to MLflow: the runs stay as the finished training left them. To make the stage
run again anyway (e.g. after the store lost its runs), delete the ``finished`` folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import vaelab
from vaelab.config import Params
from vaelab.config.train_config import TrainConfig
from vaelab.data.prepared_data import read_fingerprint
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.io.hashing import md5sum
from vaelab.io.metric_files import metric_files
from vaelab.kernels import in_force
from vaelab.tracking import tracking_uri
from vaelab.train.launch import RANK_VARIABLE

log = logging.getLogger("vaelab.train")

FOLDER = "finished"
MANIFEST = "manifest.json"
# The libraries whose versions may change the bytes of a training's outputs.
LIBRARIES = ("torch", "numpy", "scikit-learn", "pandas")


def training_for(params: Params, variant: str) -> TrainConfig:
    """``train:`` as this variant trains: its own ``epochs`` when its entry sets them."""
    epochs = params.models[variant].epochs
    return params.train if epochs is None else params.train.model_copy(update={"epochs": epochs})


def outputs(variant: str, models_root: Path, metrics_root: Path) -> dict[str, Path]:
    """The train stage's outputs for ``variant``, by their name in the ``finished`` folder."""
    files = metric_files(metrics_root, f"train/{variant}.json")
    return {
        "models": models_root / variant,
        "metrics.json": files.headline,
        "detail.json": files.detail,
        "timing.json": files.timing,
        "history.csv": metrics_root / "history" / f"{variant}.csv",
    }


def finished_folder(params: Params, variant: str) -> Path:
    """``<train.checkpoint_dir>/<variant>/finished``."""
    return Path(training_for(params, variant).checkpoint_dir) / variant / FOLDER


def sources_md5() -> str:
    """One md5 over every vaelab source file, by its path in the package."""
    package = Path(vaelab.__file__).parent
    digest = hashlib.md5(usedforsecurity=False)
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def outputs_key(params: Params, variant: str, prepared: Path) -> str:
    """The hash of everything the variant's training outputs are made from (module doc)."""
    payload: dict[str, Any] = {
        "model": params.models[variant].model_dump(mode="json"),
        "train": training_for(params, variant).model_dump(mode="json"),
        "seeds": params.replicate_seeds(),
        "data": params.data.model_dump(mode="json"),
        "prepared": read_fingerprint(prepared),
        "code": sources_md5(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "kernels": in_force(),
        "tracking": tracking_uri(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by its path relative to it (POSIX)."""
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def keep(
    params: Params, variant: str, prepared: Path, models_root: Path, metrics_root: Path
) -> None:
    """Copy the variant's outputs, just written, to its ``finished`` folder with their key
    and md5s (the folder replaced as a whole: a killed copy leaves the old one or none)."""
    with atomic_directory(finished_folder(params, variant)) as staging:
        for name, source in outputs(variant, models_root, metrics_root).items():
            if source.is_dir():
                shutil.copytree(source, staging / name)
            else:
                shutil.copy2(source, staging / name)
        md5s = {name: md5sum(path) for name, path in _files(staging).items()}
        manifest = {"key": outputs_key(params, variant, prepared), "md5": md5s}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _intact(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a manifest for ``key`` and exactly its files, md5 for md5."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return False
    files = {name: path for name, path in _files(folder).items() if name != MANIFEST}
    expected = manifest.get("md5")
    return expected == {name: md5sum(path) for name, path in files.items()}


def restore(
    params: Params,
    variant: str,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
) -> bool:
    """Put the variant's finished outputs back when they were made from exactly what the stage
    would make them from now; False (nothing done) when the stage has to run. A torchrun rank
    never restores: the process that started it looked already."""
    if RANK_VARIABLE in os.environ or variant not in params.models:
        return False
    folder = finished_folder(params, variant)
    if not folder.is_dir() or not _intact(folder, outputs_key(params, variant, prepared)):
        return False
    # Each output written beside its place and renamed there, as the stage writes them (a file
    # DVC linked to its cache is replaced, never written through).
    for name, target in outputs(variant, models_root, metrics_root).items():
        kept = folder / name
        if kept.is_dir():
            with atomic_directory(target) as staging:
                shutil.copytree(kept, staging, dirs_exist_ok=True)
        else:
            with atomic_file(target, "wb") as handle:
                handle.write(kept.read_bytes())
    log.info("%s: the training is finished; its outputs restored from %s", variant, folder)
    return True
