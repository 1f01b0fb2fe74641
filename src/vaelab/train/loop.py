"""The training loop: :func:`train_model` reads top to bottom (nanoGPT's train.py in spirit);
its set-up, one epoch of steps and the end of an epoch are the helpers below it."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
from tqdm import tqdm

from vaelab.config.train_config import TrainConfig
from vaelab.errors import UserError
from vaelab.models.interface import Autoencoder
from vaelab.models.vae_gan import VaeGan
from vaelab.runtime import Runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import TrainState, restore_checkpoint, save_checkpoint
from vaelab.train.meter import LossMeter

if TYPE_CHECKING:
    from vaelab.train.mlflow_logger import TrainRun

log = logging.getLogger("vaelab.train")

# How often (in steps) losses are brought back from the device to be checked and shown.
# Every step on a CPU costs nothing; on a GPU each sync stalls the queue.
SYNC_EVERY = {"cpu": 1, "mps": 10, "cuda": 50}

# Loss terms of one step, still on the device, with the batch's image count.
Pending = list[tuple[int, dict[str, torch.Tensor]]]
# The terms an optimiser minimises: a non-finite one stops training.
MINIMISED = ("loss", "discriminator_loss")


class NonFiniteLoss(UserError):
    """A NaN or infinite loss: training stops and no model is written."""


@dataclass
class TrainResult:
    # One row per epoch, including the epochs of an earlier run this one resumed; its
    # seconds and images/s are the source of every timing reported.
    history: list[dict[str, float]]
    steps: int
    resumed_from: dict[str, int] | None = field(default=None)


def train_model(
    model: torch.nn.Module,
    train_batches: Batches,
    val_batches: Batches,
    cfg: TrainConfig,
    runtime: Runtime,
    *,
    checkpoint_path: Path,
    config_hash: str,
    is_writer: bool = True,
    progress: bool = True,
    run: TrainRun | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.epochs``, resuming from ``checkpoint_path`` when it matches.

    ``model`` may be wrapped in DistributedDataParallel or torch.compile; the bare module
    gives ``loss``. Only the writer (rank 0) saves checkpoints and logs each epoch to ``run``,
    its MLflow run, whose id the checkpoint keeps (``run`` never raises: a tracking store
    that fails is warned about and left behind). A VAE-GAN's discriminator has an optimiser
    of its own, stepped after the model's. Returns the per-epoch history.
    """
    # The resumable state: the bare model, its optimisers, counters, history, RNG. A VAE-GAN's
    # model optimiser steps all but its discriminator, which has its own ("discriminator").
    core = unwrap(model)
    state = TrainState(model=core, optimizers=make_optimizers(model, core, cfg.lr))
    resumed_from = resume(state, checkpoint_path, config_hash, cfg.epochs)
    checkpoints = Checkpoints(checkpoint_path, state, config_hash, is_writer)

    if run is not None:
        # The checkpoint's MLflow run goes on: one training, one run. A new run gets the epochs
        # so far, and its id is saved at once: a training killed before its next checkpoint
        # continues it.
        previous, state.run_id = state.run_id, run.begin(state.run_id, state.history)
        if state.run_id != previous:
            checkpoints.save()

    sync_every = SYNC_EVERY.get(runtime.device.type, 1)
    autocast = autocast_context(runtime)
    training = Training(model, core, state, cfg, autocast, sync_every, checkpoints)

    while state.epoch < cfg.epochs:
        # One epoch of steps, from the batch a resumed run had reached.
        model.train()
        started = time.perf_counter()
        images_seen = train_epoch(training, train_batches, started, progress)
        # The epoch's row: train and validation means, throughput; then a checkpoint at the
        # boundary when the last is checkpoint_seconds old, and always after the last epoch.
        end_epoch(training, val_batches, images_seen, started, run)

    return TrainResult(history=state.history, steps=state.step, resumed_from=resumed_from)


class Checkpoints:
    """The writer's checkpoints of a training's state, and when the last one was saved."""

    def __init__(self, path: Path, state: TrainState, config_hash: str, is_writer: bool) -> None:
        self.path, self.state, self.config_hash = path, state, config_hash
        self.is_writer = is_writer
        self.saved_at = time.monotonic()

    def save(self) -> None:
        """Save the state now (the writer only; the other ranks do nothing)."""
        if self.is_writer:
            save_checkpoint(self.path, self.state, self.config_hash)
            self.saved_at = time.monotonic()

    def age(self) -> float:
        """Seconds since the last save (or since the training started)."""
        return time.monotonic() - self.saved_at


@dataclass
class Training:
    """What the steps and the epoch ends of one training share."""

    model: torch.nn.Module  # what is called: the model, or its DDP / compiled wrapper
    core: Autoencoder  # the bare model: its loss, and the state's model
    state: TrainState
    cfg: TrainConfig
    autocast: Any  # the forward's and loss's autocast context, or a null one
    sync_every: int  # steps between bringing losses to the host
    checkpoints: Checkpoints

    @property
    def gan(self) -> VaeGan | None:
        """The model when it is a VAE-GAN, whose discriminator is stepped after the model."""
        return self.core if isinstance(self.core, VaeGan) else None


def make_optimizers(
    model: torch.nn.Module, core: Autoencoder, lr: float
) -> dict[str, torch.optim.Optimizer]:
    """The model's Adam ("model") and, for a VAE-GAN, its discriminator's ("discriminator"):
    the model's then steps all but the discriminator."""
    gan = core if isinstance(core, VaeGan) else None
    if gan is not None and dist.is_initialized():
        raise UserError(
            "vae_gan trains in one process only (its discriminator is stepped outside "
            "DistributedDataParallel); run it without torchrun"
        )
    stepped = list(model.parameters() if gan is None else gan.generator_parameters())
    optimizer = torch.optim.Adam(_parameter_groups(stepped, core, lr), lr=lr)
    optimizers: dict[str, torch.optim.Optimizer] = {"model": optimizer}
    if gan is not None:
        optimizers["discriminator"] = gan.discriminator_optimizer(lr)
    return optimizers


def _parameter_groups(
    stepped: list[torch.nn.Parameter], core: Autoencoder, lr: float
) -> list[torch.nn.Parameter] | list[dict[str, Any]]:
    """The parameters as one group at ``lr``, or, for a learned decoder σ with its own
    ``sigma_lr``, the others at ``lr`` and log σ at ``sigma_lr`` (a second group)."""
    log_sigma = getattr(core, "log_sigma", None)
    settings = getattr(core, "loss_settings", None)  # any module with a loss trains here
    sigma_lr = None if settings is None else settings.sigma_lr
    if log_sigma is None or sigma_lr is None or not any(p is log_sigma for p in stepped):
        return stepped
    rest = [p for p in stepped if p is not log_sigma]
    groups: list[dict[str, Any]] = [{"params": rest}, {"params": [log_sigma], "lr": sigma_lr}]
    return groups


def resume(state: TrainState, path: Path, config_hash: str, epochs: int) -> dict[str, int] | None:
    """Load the checkpoint at ``path`` into ``state`` when it was made with ``config_hash``:
    the epoch, batch and step it resumes from; None when it starts afresh."""
    if not restore_checkpoint(path, state, config_hash):
        return None
    resumed_from = {"epoch": state.epoch, "batch": state.batch, "step": state.step}
    if state.epoch >= epochs:
        log.info(
            "the training is complete in %s (%d of %d epochs): nothing to train",
            path,
            state.epoch,
            epochs,
        )
    else:
        log.info("resuming from %s at epoch %d, batch %d", path, state.epoch + 1, state.batch)
    return resumed_from


def train_epoch(training: Training, batches: Batches, started: float, progress: bool) -> int:
    """The steps of the epoch in progress, from the batch it had reached, with a checkpoint
    every ``checkpoint_every`` steps; its loss terms go to the state's meter. The images
    stepped."""
    state, cfg = training.state, training.cfg
    images_seen, pending = 0, []
    bar = tqdm(
        total=len(batches),
        initial=state.batch,
        desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    for images in batches.epoch(state.epoch, state.batch):
        terms = step(training, images)
        state.step, state.batch, images_seen = (
            state.step + 1,
            state.batch + 1,
            images_seen + len(images),
        )
        pending.append((len(images), {k: v.detach().float() for k, v in terms.items()}))

        # Now and then: losses to the host (NaN check, progress bar), and a checkpoint.
        at_checkpoint = state.step % cfg.checkpoint_every == 0
        if len(pending) >= training.sync_every or at_checkpoint:
            absorb(pending, state.meter, state.epoch, state.step)
            bar.set_postfix(
                loss=f"{state.meter.mean('loss'):.4g}",
                img_s=f"{images_seen / (time.perf_counter() - started):.0f}",
            )
        if at_checkpoint:
            training.checkpoints.save()
        bar.update(1)
    absorb(pending, state.meter, state.epoch, state.step)
    bar.close()
    return images_seen


def step(training: Training, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """One step on a batch: the model's optimiser, then a VAE-GAN's discriminator's. The
    batch's loss terms, still on the device."""
    state, gan, autocast = training.state, training.gan, training.autocast
    with autocast:
        outputs = training.model(images)
        terms = training.core.loss(images, outputs, epoch=state.epoch)
    optimizer = state.optimizers["model"]
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    optimizer.step()
    if gan is not None:
        # The discriminator's step: real images against this step's reconstructions and
        # prior samples, detached (the model's loss saw the discriminator frozen).
        with autocast:
            critic_terms = gan.discriminator_loss(images, outputs)
        state.optimizers["discriminator"].zero_grad(set_to_none=True)
        critic_terms["discriminator_loss"].backward()  # type: ignore[no-untyped-call]  # as above
        state.optimizers["discriminator"].step()
        terms |= critic_terms
    return terms


def end_epoch(
    training: Training,
    val_batches: Batches,
    images_seen: int,
    started: float,
    run: TrainRun | None,
) -> None:
    """Close the epoch in progress: its row (train and validation means, throughput) in the
    history, a checkpoint when one is due, and the row to ``run`` and the log."""
    state, cfg = training.state, training.cfg
    train_means = state.meter.means()
    val_means = evaluate_loss(
        training.model, training.core, val_batches, state.epoch, training.autocast
    )
    seconds = time.perf_counter() - started
    row = {
        "epoch": state.epoch + 1,
        "step": state.step,
        **{f"train_{k}": v for k, v in train_means.items()},
    }
    row |= {f"val_{k}": v for k, v in val_means.items()}
    row["images_per_second"] = (
        images_seen * (dist.get_world_size() if dist.is_initialized() else 1) / seconds
    )
    row["seconds"] = seconds
    state.history.append(row)
    state.epoch, state.batch, state.meter = state.epoch + 1, 0, LossMeter()
    if state.epoch >= cfg.epochs or training.checkpoints.age() >= cfg.checkpoint_seconds:
        training.checkpoints.save()

    # Report it.
    if run is not None:
        run.log_epoch(row)
    log.info(
        "epoch %d/%d: train loss %.5g, val loss %.5g, %.0f images/s",
        state.epoch,
        cfg.epochs,
        train_means["loss"],
        val_means["loss"],
        row["images_per_second"],
    )


def unwrap(model: torch.nn.Module) -> Autoencoder:
    """The bare module under torch.compile and DistributedDataParallel wrappers."""
    core = getattr(model, "_orig_mod", model)
    if isinstance(core, torch.nn.parallel.DistributedDataParallel):
        core = core.module
    # Typed as the Autoencoder it is in vaelab; the loop asks of it only ``loss``.
    return cast(Autoencoder, core)


def autocast_context(runtime: Runtime) -> Any:
    """bf16 autocast for forward and loss when the runtime asks for it, else nothing."""
    if runtime.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)


def absorb(pending: Pending, meter: LossMeter, epoch: int, step: int) -> None:
    """Bring pending loss terms to the host, stop on the first non-finite one, add them to
    ``meter``; ``pending`` is emptied. ``step`` is the step of its last entry."""
    first_step = step - len(pending) + 1
    for offset, (count, terms) in enumerate(pending):
        values = {name: float(value) for name, value in terms.items()}
        if not all(math.isfinite(values[name]) for name in MINIMISED if name in values):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch + 1}, step {first_step + offset}: {shown}. "
                f"No model was written. Try a lower train.lr, a smaller recon_weight or kl_weight, "
                f"or precision: fp32."
            )
        meter.add(values, count)
    pending.clear()


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, core: Autoencoder, batches: Batches, epoch: int, autocast: Any
) -> dict[str, float]:
    """Mean loss terms over ``batches`` with the model in eval mode (a VAE-GAN's discriminator
    terms too, on the reconstructions: eval mode decodes no prior samples)."""
    model.eval()
    meter, pending = LossMeter(), []
    for images in batches.epoch(epoch):
        with autocast:
            outputs = model(images)
            terms = core.loss(images, outputs, epoch=epoch)
            if isinstance(core, VaeGan):
                terms |= core.discriminator_loss(images, outputs)
        pending.append((len(images), {k: v.detach().float() for k, v in terms.items()}))
    absorb(pending, meter, epoch, 0)
    return meter.means()
