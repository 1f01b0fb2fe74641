"""The ``train@<variant>`` stage: train one variant and write its model, metrics and history."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from vaelab.config import Params
from vaelab.data.prepared import IMAGES_FILE, INDEX_FILE, load_split
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory, atomic_file, write_json
from vaelab.models import build_model, count_params
from vaelab.tracking import EXPERIMENT, git_commit, mlflow_run, tracking_uri
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.device import select_runtime
from vaelab.train.distributed import DistInfo, init_distributed, shutdown_distributed
from vaelab.train.loop import train_model

log = logging.getLogger("vaelab.train")

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
MLFLOW_FILE = "mlflow.json"


def data_fingerprint(prepared: Path) -> str:
    """md5 of the prepared arrays and index: a checkpoint made on other data is not resumed."""
    digest = hashlib.md5()
    for name in (IMAGES_FILE, INDEX_FILE):
        with open(prepared / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def code_fingerprint() -> str:
    """md5 of the model and training sources: after a code change DVC reruns the stage, and
    a checkpoint from the old code must then not be taken as already finished."""
    import vaelab.models
    import vaelab.train

    digest = hashlib.md5()
    for package in (vaelab.models, vaelab.train):
        for path in sorted(Path(package.__file__).parent.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


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
        return _train_variant(params, variant, dist_info, prepared, models_root, metrics_root, progress)
    finally:
        shutdown_distributed()


def _train_variant(
    params: Params,
    variant: str,
    dist_info: DistInfo,
    prepared: Path,
    models_root: Path,
    metrics_root: Path,
    progress: bool,
) -> dict[str, Any]:
    model_cfg, train_cfg = params.models[variant], params.train
    runtime = select_runtime(train_cfg.device, train_cfg.precision, local_rank=dist_info.local_rank)

    train_images = load_split(prepared, "train")
    val_images = load_split(prepared, "val")
    image_size, channels = train_images.shape[1], train_images.shape[3]
    if train_images.shape[1] != train_images.shape[2]:
        raise UserError(f"{prepared}: images are {train_images.shape[1:3]}, not square; rerun prepare")

    torch.manual_seed(params.seed)
    model = build_model(model_cfg, image_size=image_size, channels=channels).to(runtime.device)
    counts = count_params(model)
    stepped: torch.nn.Module = model
    if dist_info.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        stepped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if train_cfg.compile:
        stepped = torch.compile(stepped)
    data_md5 = data_fingerprint(prepared)
    fingerprint = config_hash(
        {
            "model": model_cfg.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json"),
            "seed": params.seed,
            "data": data_md5,
            "code": code_fingerprint(),
        }
    )
    batches = dict(batch_size=train_cfg.batch_size, device=runtime.device, seed=params.seed,
                   rank=dist_info.rank, world_size=dist_info.world_size)
    tags = {"variant": variant, "git_commit": git_commit(), "data_md5": data_md5, "arch": model_cfg.arch}
    run_params = {"variant": variant, "seed": params.seed, "model": model_cfg.model_dump(mode="json"),
                  "train": train_cfg.model_dump(mode="json"), "data": params.data.model_dump(mode="json")}
    tracking = mlflow_run(variant, run_params, tags) if dist_info.is_writer else contextlib.nullcontext()
    with tracking as run:

        def log_epoch(row: dict[str, float]) -> None:
            if dist_info.is_writer:
                import mlflow

                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

        result = train_model(
            stepped,
            Batches(train_images, **batches),
            Batches(val_images, shuffle=False, **batches),
            train_cfg,
            runtime,
            checkpoint_path=Path(train_cfg.checkpoint_dir) / f"{variant}.pt",
            config_hash=fingerprint,
            is_writer=dist_info.is_writer,
            progress=progress and dist_info.is_writer,
            on_epoch=log_epoch,
        )
    if not dist_info.is_writer:
        return {}
    run_id = run.info.run_id

    final = result.history[-1]
    seconds = sum(row["seconds"] for row in result.history)
    images = sum(row["images_per_second"] * row["seconds"] for row in result.history)
    config = {
        "variant": variant,
        "model": model_cfg.model_dump(mode="json"),
        "image_size": image_size,
        "channels": channels,
        "seed": params.seed,
        "train": train_cfg.model_dump(mode="json"),
        "trainable_params": counts.trainable,
        # How the images were made, so that new images can be cropped and resized the same way.
        "data": params.data.model_dump(mode="json"),
    }
    with atomic_directory(models_root / variant) as staging:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (staging / MLFLOW_FILE).write_text(
            json.dumps({"run_id": run_id, "tracking_uri": tracking_uri(), "experiment": EXPERIMENT}, indent=2) + "\n"
        )

    metrics = {
        "train": {k.removeprefix("train_"): v for k, v in final.items() if k.startswith("train_")},
        "val": {k.removeprefix("val_"): v for k, v in final.items() if k.startswith("val_")},
        "epochs": len(result.history),
        "steps": result.steps,
        # From the history, so that a resumed run reports the whole training, not its tail.
        "images_per_second": round(images / seconds, 1) if seconds > 0 else None,
        "seconds": round(seconds, 3),
        "device": str(runtime.device),
        "precision": runtime.precision,
        "trainable_params": counts.trainable,
    }
    write_json(metrics_root / "train" / f"{variant}.json", metrics)
    with atomic_file(metrics_root / "history" / f"{variant}.csv") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result.history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(result.history)
    return metrics


def load_trained(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained variant from ``models/<variant>/`` (weights loaded weights-only)."""
    from vaelab.config.models import parse_model_config

    config = json.loads((folder / CONFIG_FILE).read_text())
    model = build_model(parse_model_config(config["model"]), image_size=config["image_size"], channels=config["channels"])
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), config
