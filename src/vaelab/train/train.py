"""The ``train@<variant>`` stage: train one variant's replicates (one per seed of
``train.seeds``) and write its models, metrics and history.

The tracking store is reached first, before anything is written (:mod:`vaelab.train.mlflow_logger`).
Per replicate, :func:`build` (model, runtime, the checkpoint's key) and :func:`fit` (the
loop, logging to an MLflow run of its own); then :func:`write` (``models/<variant>/seed<k>/``
with each replicate's ex-post GMM (:func:`fit_gmm`), the metrics and history averaged over
the replicates), and a copy of it all kept beside the checkpoints: a later stage with nothing
to do puts that copy back without importing torch (:mod:`vaelab.train.finished`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vaelab.config import Params
from vaelab.config.train_config import TrainConfig
from vaelab.data.prepared_data import load_split, read_fingerprint
from vaelab.errors import UserError
from vaelab.io.atomic import atomic_file
from vaelab.io.json_files import flatten
from vaelab.io.metric_files import headline_of, metric_files
from vaelab.kernels import in_force
from vaelab.models import Autoencoder, build_model, count_params
from vaelab.models.latent_gmm import LatentGMM, fit_latent_gmm
from vaelab.models.saved import (
    REPLICATE_PREFIX,
    SavedConfig,
    Trained,
    replicate_folder,
    save_replicates,
    weights_md5,
)
from vaelab.runtime import Runtime, deterministic, select_runtime
from vaelab.tracking import (
    MODEL_MD5_TAG,
    SEED_TAG,
    STAGE_TAG,
    TRAIN_STAGE,
    VARIANT_TAG,
    run_tags,
)
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.convergence import check, summarise
from vaelab.train.distributed import DistInfo, init_distributed, shutdown_distributed
from vaelab.train.finished import keep, training_for
from vaelab.train.loop import TrainResult, train_model
from vaelab.train.mlflow_logger import Tracking, TrainRun, ended_status, open_tracking

log = logging.getLogger("vaelab.train")

# The DVC metrics of a training, ``metrics/train/<variant>.json``: the last epoch's validation
# losses (headline key -> key of the detail); the rest is in ``metrics/detail/train/``.
TRAIN_HEADLINE = {"val.loss": "val.loss", "val.recon": "val.recon", "val.kl": "val.kl"}
# Columns of the loop's history that time the machine, not the model (kept out of the history CSV).
TIMING_COLUMNS = ["seconds", "images_per_second"]


def code_fingerprint() -> str:
    """md5 of the model and training sources: after a code change DVC reruns the stage, and
    a checkpoint from the old code must then not be taken as already finished."""
    import vaelab.models
    import vaelab.runtime
    import vaelab.train

    sources = [Path(vaelab.runtime.__file__)]
    for folder in (Path(vaelab.models.__file__).parent, Path(vaelab.train.__file__).parent):
        sources += sorted(folder.glob("*.py"))
    digest = hashlib.md5()
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Splits:
    """The prepared training and validation images, loaded once for every replicate."""

    train: np.ndarray  # (N, H, W, C) uint8
    val: np.ndarray
    md5: str  # of the prepared arrays and index


@dataclass
class Setup:
    """What :func:`build` makes for one replicate of a variant."""

    variant: str
    seed: int
    model: Autoencoder  # the bare model
    stepped: torch.nn.Module  # what the loop calls: the model, or its DDP / compiled wrapper
    runtime: Runtime
    checkpoint_key: str  # hash of model, training, seed, data and code: resume only on a match


@dataclass(frozen=True)
class Fitted:
    """One trained replicate: its setup, the loop's result and its MLflow run (rank 0 only)."""

    setup: Setup
    result: TrainResult
    run: TrainRun | None


def run_train(
    params: Params,
    variant: str,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    progress: bool = True,
) -> dict[str, Any]:
    """Train every replicate of ``variant`` (one per seed) and write its models and metrics
    (rank 0 only: the other ranks of a distributed training return ``{}``); the metrics."""
    if variant not in params.models:
        raise UserError(
            f"variant '{variant}' is not in params.yaml models: ({', '.join(params.models)})"
        )
    dist_info = init_distributed()
    try:
        # Before the first step: a tracking server that does not answer stops the stage here.
        with (
            open_tracking(params.registry)
            if dist_info.is_writer
            else contextlib.nullcontext() as tracking
        ):
            splits = load_splits(prepared)
            fitted = []
            for seed in params.replicate_seeds():
                setup = build(params, variant, seed, dist_info, splits)
                fitted.append(fit(params, setup, splits, dist_info, progress, tracking))
            if not dist_info.is_writer:
                return {}
            metrics = write(params, splits, fitted, models_root, metrics_root)
            # For a later run with nothing to do (vaelab.train.finished.restore).
            keep(params, variant, prepared, models_root, metrics_root)
            return metrics
    finally:
        shutdown_distributed()


def load_splits(prepared: Path) -> Splits:
    """The prepared training and validation images (square, or a UserError) and their md5."""
    train_images = load_split(prepared, "train")
    if train_images.shape[1] != train_images.shape[2]:
        raise UserError(
            f"{prepared}: images are {train_images.shape[1:3]}, not square; rerun prepare"
        )
    return Splits(train_images, load_split(prepared, "val"), read_fingerprint(prepared))


def build(params: Params, variant: str, seed: int, dist_info: DistInfo, splits: Splits) -> Setup:
    """The replicate's model on its device (wrapped for DDP / compile) and its checkpoint's key."""
    model_cfg, train_cfg = params.models[variant], training_for(params, variant)
    runtime = select_runtime(
        train_cfg.device, train_cfg.precision, key="train", local_rank=dist_info.local_rank
    )
    deterministic(train_cfg.threads, compiled=train_cfg.compile)
    torch.manual_seed(seed)
    model = build_model(model_cfg, image_size=splits.train.shape[1], channels=splits.train.shape[3])
    model = model.to(runtime.device)
    stepped: torch.nn.Module = model
    if dist_info.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        stepped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if train_cfg.compile:
        # torch.compile of a Module gives an OptimizedModule (a Module), typed as a callable.
        stepped = torch.compile(stepped)  # type: ignore[assignment]

    key = config_hash(
        {
            "model": model_cfg.model_dump(mode="json"),
            # The number of replicates is not part of one replicate's training, nor is the GMM
            # fitted after it, nor when checkpoints are written (checkpoint_every stays: older
            # keys had it).
            "train": train_cfg.model_dump(
                mode="json", exclude={"seeds", "gmm", "checkpoint_seconds"}
            ),
            "seed": seed,
            "data": splits.md5,
            "code": code_fingerprint(),
            # The kernels in force (train.portable_kernels, train.threads): other bytes.
            "kernels": in_force(),
        }
    )
    return Setup(variant, seed, model, stepped, runtime, key)


def fit(
    params: Params,
    setup: Setup,
    splits: Splits,
    dist_info: DistInfo,
    progress: bool,
    tracking: Tracking | None,
) -> Fitted:
    """Run the loop, logging to the replicate's MLflow run (rank 0 only: ``tracking``)."""
    train_cfg = training_for(params, setup.variant)
    run = None if tracking is None else train_run(tracking, params, setup, splits.md5)
    try:
        train_batches = replicate_batches(
            splits.train, train_cfg, setup, dist_info, hflip=train_cfg.hflip
        )
        val_batches = replicate_batches(splits.val, train_cfg, setup, dist_info, shuffle=False)
        result = train_model(
            setup.stepped,
            train_batches,
            val_batches,
            train_cfg,
            setup.runtime,
            checkpoint_path=Path(train_cfg.checkpoint_dir)
            / setup.variant
            / f"{REPLICATE_PREFIX}{setup.seed}.pt",
            config_hash=setup.checkpoint_key,
            is_writer=dist_info.is_writer,
            progress=progress and dist_info.is_writer,
            run=run,
        )
    except BaseException as err:
        if run is not None:
            run.end(ended_status(err))
        raise
    if run is not None:
        run.end()
    return Fitted(setup, result, run)


def train_run(tracking: Tracking, params: Params, setup: Setup, data_md5: str) -> TrainRun:
    """The replicate's MLflow run, not yet begun: its name, flattened params and tags."""
    variant, model_cfg = setup.variant, params.models[setup.variant]
    train_cfg = training_for(params, variant)
    # run_tags: the provenance (git commit and dirtiness, the DVC experiment).
    tags = {
        **run_tags(),
        STAGE_TAG: TRAIN_STAGE,
        VARIANT_TAG: variant,
        SEED_TAG: str(setup.seed),
        "data_md5": data_md5,
        "arch": model_cfg.arch,
    }
    run_params = {
        "variant": variant,
        "seed": setup.seed,
        "model": model_cfg.model_dump(mode="json"),
        "train": train_cfg.model_dump(mode="json"),
        "data": params.data.model_dump(mode="json"),
    }
    rerun = (
        f"rerunning this training (`python stages/train.py {variant}`, "
        f"or `dvc repro --force --single-item train@{variant}`)"
    )
    return TrainRun(
        tracking,
        f"{variant}/{REPLICATE_PREFIX}{setup.seed}",
        flatten(run_params, keep_empty=False),
        tags,
        epochs=train_cfg.epochs,
        rerun=rerun,
    )


def replicate_batches(
    images: np.ndarray,
    train_cfg: TrainConfig,
    setup: Setup,
    dist_info: DistInfo,
    *,
    shuffle: bool = True,
    hflip: bool = False,
) -> Batches:
    """Batches of ``images`` as the replicate is trained on them: ``train.batch_size`` on its
    device, its seed, and this rank's share."""
    return Batches(
        images,
        batch_size=train_cfg.batch_size,
        device=setup.runtime.device,
        seed=setup.seed,
        shuffle=shuffle,
        hflip=hflip,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )


@torch.no_grad()
def training_codes(
    model: Autoencoder, images: np.ndarray, *, batch_size: int, device: torch.device
) -> np.ndarray:
    """The flattened codes ``encode(x)["z"]`` of ``(N, H, W, C)`` uint8 images, in order, with
    the model in eval mode (as it is sampled; VAEs: the posterior means) and in float32:
    ``(N, D)`` float64."""
    was_training = model.training
    model.eval()
    try:
        codes = [
            model.encode(x)["z"].flatten(1).float().cpu()
            for x in Batches(
                images, batch_size=batch_size, device=device, seed=0, shuffle=False
            ).epoch(0)
        ]
    finally:
        model.train(was_training)
    return torch.cat(codes).double().numpy()


def fit_gmm(params: Params, setup: Setup, splits: Splits) -> LatentGMM | None:
    """The replicate's ex-post GMM (``train.gmm``), fitted to its training codes with its seed;
    None when ``train.gmm.components`` is 0 or the code has more than ``train.gmm.max_dim``
    values."""
    settings, model = params.train.gmm, setup.model
    if settings.components == 0:
        return None
    if model.latent_dim > settings.max_dim:
        log.info(
            "%s: no latent GMM: its code has %d values, above train.gmm.max_dim %d",
            setup.variant,
            model.latent_dim,
            settings.max_dim,
        )
        return None
    codes = training_codes(
        model,
        splits.train,
        batch_size=training_for(params, setup.variant).batch_size,
        device=setup.runtime.device,
    )
    try:
        gmm = fit_latent_gmm(codes, settings.components, setup.seed)
    except ValueError as err:  # e.g. scikit-learn's ill-defined covariances of degenerate codes
        raise UserError(
            f"{setup.variant} seed {setup.seed}: cannot fit train.gmm's mixture to its "
            f"training codes ({err}); set train.gmm.components lower, or 0 for none"
        ) from err
    log.info(
        "%s seed %d: a %d-component GMM on %d training codes of %d values",
        setup.variant,
        setup.seed,
        gmm.components,
        len(codes),
        gmm.dim,
    )
    return gmm


def tag_weights(fitted: list[Fitted], variant_folder: Path) -> None:
    """Tag each replicate's finished run with the md5 of the weights it saved: the run is
    found by that tag (``register`` does), so no run id has to sit in ``models/<variant>/``,
    whose DVC hash then depends on the weights alone."""
    for item in fitted:
        if item.run is not None:
            item.run.tag(
                MODEL_MD5_TAG, weights_md5(replicate_folder(variant_folder, item.setup.seed))
            )


def write(
    params: Params, splits: Splits, fitted: list[Fitted], models_root: Path, metrics_root: Path
) -> dict[str, Any]:
    """``models/<variant>/seed<k>/``; the metrics (``metrics/train/<variant>.json``, its detail
    and timing files) and ``metrics/history/<variant>.csv``, averaged over the replicates."""
    variant = fitted[0].setup.variant
    trainable = count_params(fitted[0].setup.model).trainable
    trained = [to_trained(params, splits, item, trainable) for item in fitted]
    save_replicates(models_root / variant, trained)
    tag_weights(fitted, models_root / variant)

    history = mean_history(fitted)
    final = history.iloc[-1]
    timing = training_timing(fitted)
    convergence = summarise(
        history["val_loss"].tolist(),
        {
            item.setup.seed: check([row["val_loss"] for row in item.result.history])
            for item in fitted
        },
    )
    detail = {
        "train": {
            k.removeprefix("train_"): float(v) for k, v in final.items() if k.startswith("train_")
        },
        "val": {k.removeprefix("val_"): float(v) for k, v in final.items() if k.startswith("val_")},
        "seeds": len(fitted),
        "epochs": len(history),
        "steps": fitted[0].result.steps,
        "trainable_params": trainable,
        "convergence": convergence,
    }
    metric_files(metrics_root, f"train/{variant}.json").write(
        headline_of(detail, TRAIN_HEADLINE), detail, timing
    )
    if not convergence["converged"]:
        log.warning("%s has not converged: %s", variant, convergence["note"])
    # The curves only: per-epoch timings would make the table differ on every run.
    with atomic_file(metrics_root / "history" / f"{variant}.csv") as handle:
        history.drop(columns=TIMING_COLUMNS).to_csv(handle, index=False, lineterminator="\n")
    return detail | timing


def to_trained(params: Params, splits: Splits, item: Fitted, trainable: int) -> Trained:
    """A replicate as it is saved: its model, its config and its ex-post GMM (fitted here)."""
    variant = item.setup.variant
    config = SavedConfig(
        variant=variant,
        model=params.models[variant],
        image_size=splits.train.shape[1],
        channels=splits.train.shape[3],
        seed=item.setup.seed,
        train=training_for(params, variant),
        trainable_params=trainable,
        data=params.data,
    )
    return Trained(item.setup.model, config, fit_gmm(params, item.setup, splits))


def mean_history(fitted: list[Fitted]) -> pd.DataFrame:
    """The replicates' histories averaged epoch by epoch, in the loop's column order."""
    # Every replicate has one row per epoch; the history is their mean, epoch by epoch.
    history = (
        pd.DataFrame([row for item in fitted for row in item.result.history])
        .groupby("epoch", sort=True)
        .mean()
    )
    history = history.reset_index()[list(fitted[0].result.history[0])]
    history["step"] = history["step"].round().astype(int)  # the same for every replicate
    return history


def training_timing(fitted: list[Fitted]) -> dict[str, Any]:
    """The timing metrics: images/s and seconds of all the replicates, device and precision."""
    seconds = sum(row["seconds"] for item in fitted for row in item.result.history)
    images = sum(
        row["images_per_second"] * row["seconds"] for item in fitted for row in item.result.history
    )
    runtime = fitted[0].setup.runtime
    return {
        # From the histories, so that a resumed run reports the whole training, not its tail.
        "images_per_second": round(images / seconds, 1) if seconds > 0 else None,
        "seconds": round(seconds, 3),
        "device": str(runtime.device),
        "precision": runtime.precision,
        "kernels": in_force(),
    }
