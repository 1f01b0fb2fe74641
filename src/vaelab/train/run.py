"""The ``train@<variant>`` stage: train one variant and write its model, metrics and history.

Three steps: :func:`build` (data, model, runtime, the checkpoint's key), :func:`fit` (the
loop inside an MLflow run) and :func:`write` (the model folder, metrics and history).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import Params
from vaelab.data.prepared import IMAGES_FILE, INDEX_FILE, load_split
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_file, write_json
from vaelab.io.hashing import md5_of_files
from vaelab.models import build_model, count_params
from vaelab.models.saved import RunInfo, SavedConfig, save_trained
from vaelab.runtime import Runtime, select_runtime
from vaelab.tracking import EXPERIMENT, git_commit, mlflow_run, tracking_uri
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.distributed import DistInfo, init_distributed, shutdown_distributed
from vaelab.train.loop import TrainResult, train_model

log = logging.getLogger("vaelab.train")


def data_fingerprint(prepared: Path) -> str:
    """md5 of the prepared arrays and index: a checkpoint made on other data is not resumed."""
    return md5_of_files([prepared / IMAGES_FILE, prepared / INDEX_FILE])


def code_fingerprint() -> str:
    """md5 of the model and training sources: after a code change DVC reruns the stage, and
    a checkpoint from the old code must then not be taken as already finished."""
    import vaelab.models
    import vaelab.runtime
    import vaelab.train

    sources = [Path(vaelab.runtime.__file__)]
    for package in (vaelab.models, vaelab.train):
        sources += sorted(Path(package.__file__).parent.glob("*.py"))
    digest = hashlib.md5()
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Setup:
    """What :func:`build` makes for one variant."""

    variant: str
    model: torch.nn.Module  # the bare model
    stepped: torch.nn.Module  # what the loop calls: the model, or its DDP / compiled wrapper
    runtime: Runtime
    train_images: np.ndarray  # (N, H, W, C) uint8
    val_images: np.ndarray
    data_md5: str
    checkpoint_key: str  # hash of model, training, seed, data and code: resume only on a match


def run_train(
    params: Params,
    variant: str,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    progress: bool = True,
) -> dict[str, Any]:
    if variant not in params.models:
        raise UserError(f"variant '{variant}' is not in params.yaml models: ({', '.join(params.models)})")
    dist_info = init_distributed()
    try:
        setup = build(params, variant, dist_info, prepared)
        result, run_id = fit(params, setup, dist_info, progress)
        if not dist_info.is_writer:
            return {}
        return write(params, setup, result, run_id, models_root, metrics_root)
    finally:
        shutdown_distributed()


def build(params: Params, variant: str, dist_info: DistInfo, prepared: Path) -> Setup:
    """Load the splits, build the model on its device (wrapped for DDP / compile) and key its checkpoint."""
    model_cfg, train_cfg = params.models[variant], params.train
    runtime = select_runtime(train_cfg.device, train_cfg.precision, key="train", local_rank=dist_info.local_rank)
    train_images = load_split(prepared, "train")
    val_images = load_split(prepared, "val")
    if train_images.shape[1] != train_images.shape[2]:
        raise UserError(f"{prepared}: images are {train_images.shape[1:3]}, not square; rerun prepare")

    torch.manual_seed(params.seed)
    model = build_model(model_cfg, image_size=train_images.shape[1], channels=train_images.shape[3])
    model = model.to(runtime.device)
    stepped: torch.nn.Module = model
    if dist_info.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        stepped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if train_cfg.compile:
        stepped = torch.compile(stepped)

    data_md5 = data_fingerprint(prepared)
    key = config_hash({
        "model": model_cfg.model_dump(mode="json"),
        "train": train_cfg.model_dump(mode="json"),
        "seed": params.seed,
        "data": data_md5,
        "code": code_fingerprint(),
    })
    return Setup(variant, model, stepped, runtime, train_images, val_images, data_md5, key)


def fit(params: Params, setup: Setup, dist_info: DistInfo, progress: bool) -> tuple[TrainResult, str | None]:
    """Run the loop inside an MLflow run (rank 0 only); returns the result and the run id."""
    model_cfg, train_cfg, variant = params.models[setup.variant], params.train, setup.variant
    batches = dict(batch_size=train_cfg.batch_size, device=setup.runtime.device, seed=params.seed,
                   rank=dist_info.rank, world_size=dist_info.world_size)
    tags = {"variant": variant, "git_commit": git_commit(), "data_md5": setup.data_md5, "arch": model_cfg.arch}
    run_params = {"variant": variant, "seed": params.seed, "model": model_cfg.model_dump(mode="json"),
                  "train": train_cfg.model_dump(mode="json"), "data": params.data.model_dump(mode="json")}
    tracking = mlflow_run(variant, run_params, tags) if dist_info.is_writer else contextlib.nullcontext()

    with tracking as run:

        def log_epoch(row: dict[str, float]) -> None:
            if dist_info.is_writer:
                import mlflow

                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

        result = train_model(
            setup.stepped,
            Batches(setup.train_images, **batches),
            Batches(setup.val_images, shuffle=False, **batches),
            train_cfg,
            setup.runtime,
            checkpoint_path=Path(train_cfg.checkpoint_dir) / f"{variant}.pt",
            config_hash=setup.checkpoint_key,
            is_writer=dist_info.is_writer,
            progress=progress and dist_info.is_writer,
            on_epoch=log_epoch,
        )
    return result, (run.info.run_id if run is not None else None)


def write(
    params: Params, setup: Setup, result: TrainResult, run_id: str | None, models_root: Path, metrics_root: Path
) -> dict[str, Any]:
    """``models/<variant>/``, ``metrics/train/<variant>.json`` and ``metrics/history/<variant>.csv``."""
    variant = setup.variant
    trainable = count_params(setup.model).trainable
    config = SavedConfig(
        variant=variant,
        model=params.models[variant],
        image_size=setup.train_images.shape[1],
        channels=setup.train_images.shape[3],
        seed=params.seed,
        train=params.train,
        trainable_params=trainable,
        data=params.data,
    )
    run = RunInfo(run_id=run_id, tracking_uri=tracking_uri(), experiment=EXPERIMENT) if run_id else None
    save_trained(models_root / variant, setup.model, config, run)

    final = result.history[-1]
    seconds = sum(row["seconds"] for row in result.history)
    images = sum(row["images_per_second"] * row["seconds"] for row in result.history)
    metrics = {
        "train": {k.removeprefix("train_"): v for k, v in final.items() if k.startswith("train_")},
        "val": {k.removeprefix("val_"): v for k, v in final.items() if k.startswith("val_")},
        "epochs": len(result.history),
        "steps": result.steps,
        # From the history, so that a resumed run reports the whole training, not its tail.
        "images_per_second": round(images / seconds, 1) if seconds > 0 else None,
        "seconds": round(seconds, 3),
        "device": str(setup.runtime.device),
        "precision": setup.runtime.precision,
        "trainable_params": trainable,
    }
    write_json(metrics_root / "train" / f"{variant}.json", metrics)
    with atomic_file(metrics_root / "history" / f"{variant}.csv") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result.history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.history)
    return metrics
