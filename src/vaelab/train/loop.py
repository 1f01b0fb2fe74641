"""The training loop: one function to read top to bottom (nanoGPT's train.py in spirit)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from vaelab.config.train import TrainConfig
from vaelab.errors import UserError
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from vaelab.train.device import Runtime

log = logging.getLogger("vaelab.train")

# How often (in steps) losses are brought back from the device to be checked and shown.
# Every step on a CPU costs nothing; on a GPU each sync stalls the queue.
SYNC_EVERY = {"cpu": 1, "mps": 10, "cuda": 50}


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
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.epochs``, resuming from ``checkpoint_path`` when it matches.

    ``model`` may be wrapped in DistributedDataParallel; its ``module`` then gives
    ``loss``. Only the writer (rank 0) saves checkpoints. Returns the per-epoch history.
    """
    core = getattr(model, "_orig_mod", model)  # under torch.compile
    if isinstance(core, torch.nn.parallel.DistributedDataParallel):
        core = core.module
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch, start_batch, step, history = 0, 0, 0, []
    partial: dict[str, float] = {}
    resumed_from = None

    state = load_checkpoint(checkpoint_path, config_hash)
    if state is not None:
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        history, partial = list(state["history"]), dict(state["partial"])
        set_rng_state(state["rng"])
        resumed_from = {"epoch": start_epoch, "batch": start_batch, "step": step}
        log.info("resuming from %s at epoch %d, batch %d", checkpoint_path, start_epoch + 1, start_batch)

    def checkpoint(epoch: int, batch: int, sums: dict[str, float]) -> None:
        if is_writer:
            save_checkpoint(
                checkpoint_path,
                {
                    "model": core.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "batch": batch,
                    "step": step,
                    "history": history,
                    "partial": sums,
                    "rng": rng_state(),
                    "config_hash": config_hash,
                },
            )

    sync_every = SYNC_EVERY.get(runtime.device.type, 1)
    autocast = (
        torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)
        if runtime.autocast_dtype is not None
        else contextlib.nullcontext()
    )

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        # Sums of loss terms weighted by batch size; kept in the checkpoint mid-epoch.
        sums = partial if epoch == start_epoch else {}
        pending: list[tuple[int, dict[str, torch.Tensor]]] = []
        bar = tqdm(
            total=len(train_batches),
            initial=start_batch if epoch == start_epoch else 0,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        epoch_started, epoch_images = time.perf_counter(), 0
        first_batch = start_batch if epoch == start_epoch else 0
        for batch_index, images in enumerate(train_batches.epoch(epoch, first_batch), start=first_batch):
            with autocast:
                outputs = model(images)
                terms = core.loss(images, outputs, epoch=epoch)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            step += 1
            epoch_images += len(images)
            pending.append((len(images), {k: v.detach().float() for k, v in terms.items()}))

            at_checkpoint = step % cfg.checkpoint_every == 0
            if len(pending) >= sync_every or at_checkpoint:
                _absorb(pending, sums, epoch, step)
                pending.clear()
                bar.set_postfix(loss=f"{sums['loss'] / sums['_n']:.4g}", img_s=f"{epoch_images / (time.perf_counter() - epoch_started):.0f}")
            if at_checkpoint:
                checkpoint(epoch, batch_index + 1, sums)
            bar.update(1)
        _absorb(pending, sums, epoch, step)
        bar.close()

        train_means = _reduce_means(sums)
        val_means = evaluate_loss(model, core, val_batches, epoch, autocast)
        seconds = time.perf_counter() - epoch_started
        row = {"epoch": epoch + 1, "step": step, **{f"train_{k}": v for k, v in train_means.items()}}
        row |= {f"val_{k}": v for k, v in val_means.items()}
        row["images_per_second"] = epoch_images * (dist.get_world_size() if dist.is_initialized() else 1) / seconds
        row["seconds"] = seconds
        history.append(row)
        partial = {}
        checkpoint(epoch + 1, 0, {})
        if on_epoch is not None:
            on_epoch(row)
        log.info(
            "epoch %d/%d: train loss %.5g, val loss %.5g, %.0f images/s",
            epoch + 1,
            cfg.epochs,
            train_means["loss"],
            val_means["loss"],
            row["images_per_second"],
        )

    return TrainResult(history=history, steps=step, resumed_from=resumed_from)


def _absorb(pending: list[tuple[int, dict[str, torch.Tensor]]], sums: dict[str, float], epoch: int, step: int) -> None:
    """Bring pending loss terms to the host, stop on the first non-finite one, add to ``sums``."""
    first_step = step - len(pending) + 1
    for offset, (count, terms) in enumerate(pending):
        values = {name: float(value) for name, value in terms.items()}
        if not math.isfinite(values["loss"]):
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise NonFiniteLoss(
                f"non-finite loss at epoch {epoch + 1}, step {first_step + offset}: {shown}. "
                f"No model was written. Try a lower train.lr, a smaller recon_weight or kl_weight, "
                f"or precision: fp32."
            )
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * count
        sums["_n"] = sums.get("_n", 0.0) + count


def _reduce_means(sums: dict[str, float]) -> dict[str, float]:
    """Batch-size-weighted means, averaged over every rank when distributed."""
    names = sorted(k for k in sums if k != "_n")
    totals = torch.tensor([sums[k] for k in names] + [sums.get("_n", 0.0)], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(totals)
    count = max(totals[-1].item(), 1.0)
    return {name: totals[i].item() / count for i, name in enumerate(names)}


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module, core: torch.nn.Module, batches: Batches, epoch: int, autocast: Any
) -> dict[str, float]:
    """Mean loss terms over ``batches`` with the model in eval mode."""
    model.eval()
    sums: dict[str, float] = {}
    pending = []
    for images in batches.epoch(epoch):
        with autocast:
            outputs = model(images)
            terms = core.loss(images, outputs, epoch=epoch)
        pending.append((len(images), {k: v.detach().float() for k, v in terms.items()}))
    if pending:
        _absorb(pending, sums, epoch, 0)
    return _reduce_means(sums)
