"""The training loop: one function to read top to bottom (nanoGPT's train.py in spirit)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from vaelab.config.train_config import TrainConfig
from vaelab.errors import UserError
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
    gan = core if isinstance(core, VaeGan) else None
    if gan is not None and dist.is_initialized():
        raise UserError(
            "vae_gan trains in one process only (its discriminator is stepped outside "
            "DistributedDataParallel); run it without torchrun"
        )
    optimizer = torch.optim.Adam(
        model.parameters() if gan is None else gan.generator_parameters(), lr=cfg.lr
    )
    optimizers = {"model": optimizer}
    if gan is not None:
        optimizers["discriminator"] = gan.discriminator_optimizer(cfg.lr)
    state = TrainState(model=core, optimizers=optimizers)
    resumed_from = None
    if restore_checkpoint(checkpoint_path, state, config_hash):
        resumed_from = {"epoch": state.epoch, "batch": state.batch, "step": state.step}
        if state.epoch >= cfg.epochs:
            log.info(
                "the training is complete in %s (%d of %d epochs): nothing to train",
                checkpoint_path,
                state.epoch,
                cfg.epochs,
            )
        else:
            log.info(
                "resuming from %s at epoch %d, batch %d",
                checkpoint_path,
                state.epoch + 1,
                state.batch,
            )

    saved_at = time.monotonic()

    def checkpoint() -> None:
        nonlocal saved_at
        if is_writer:
            save_checkpoint(checkpoint_path, state, config_hash)
            saved_at = time.monotonic()

    if run is not None:
        # The checkpoint's MLflow run goes on: one training, one run. A new run gets the epochs so
        # far, and its id is saved at once: a training killed before its next checkpoint continues it.
        previous, state.run_id = state.run_id, run.begin(state.run_id, state.history)
        if state.run_id != previous:
            checkpoint()

    sync_every = SYNC_EVERY.get(runtime.device.type, 1)
    autocast = autocast_context(runtime)

    while state.epoch < cfg.epochs:
        # One epoch of steps, from the batch a resumed run had reached.
        model.train()
        started, images_seen, pending = time.perf_counter(), 0, []
        bar = tqdm(
            total=len(train_batches),
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for images in train_batches.epoch(state.epoch, state.batch):
            with autocast:
                outputs = model(images)
                terms = core.loss(images, outputs, epoch=state.epoch)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            if gan is not None:
                # The discriminator's step: real images against this step's reconstructions and
                # prior samples, detached (the model's loss saw the discriminator frozen).
                with autocast:
                    critic_terms = gan.discriminator_loss(images, outputs)
                optimizers["discriminator"].zero_grad(set_to_none=True)
                critic_terms["discriminator_loss"].backward()
                optimizers["discriminator"].step()
                terms |= critic_terms
            state.step, state.batch, images_seen = (
                state.step + 1,
                state.batch + 1,
                images_seen + len(images),
            )
            pending.append((len(images), {k: v.detach().float() for k, v in terms.items()}))

            # Now and then: losses to the host (NaN check, progress bar), and a checkpoint.
            at_checkpoint = state.step % cfg.checkpoint_every == 0
            if len(pending) >= sync_every or at_checkpoint:
                absorb(pending, state.meter, state.epoch, state.step)
                bar.set_postfix(
                    loss=f"{state.meter.mean('loss'):.4g}",
                    img_s=f"{images_seen / (time.perf_counter() - started):.0f}",
                )
            if at_checkpoint:
                checkpoint()
            bar.update(1)
        absorb(pending, state.meter, state.epoch, state.step)
        bar.close()

        # The epoch's row: train and validation means, throughput; then a checkpoint at the
        # boundary when the last is checkpoint_seconds old, and always after the last epoch.
        train_means = state.meter.means()
        val_means = evaluate_loss(model, core, val_batches, state.epoch, autocast)
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
        if state.epoch >= cfg.epochs or time.monotonic() - saved_at >= cfg.checkpoint_seconds:
            checkpoint()

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

    return TrainResult(history=state.history, steps=state.step, resumed_from=resumed_from)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under torch.compile and DistributedDataParallel wrappers."""
    core = getattr(model, "_orig_mod", model)
    if isinstance(core, torch.nn.parallel.DistributedDataParallel):
        core = core.module
    return core


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
    model: torch.nn.Module, core: torch.nn.Module, batches: Batches, epoch: int, autocast: Any
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
