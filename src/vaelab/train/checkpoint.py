"""The resumable state of a training run and its checkpoint: a plain dict of tensors,
numbers and strings, written atomically, loaded weights-only."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaelab.errors import UserError
from vaelab.io.atomic import atomic_file
from vaelab.train.meter import LossMeter

log = logging.getLogger("vaelab.checkpoint")


def config_hash(payload: dict[str, Any]) -> str:
    """A stable hash of everything that must match for a checkpoint to be resumed."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the last one stopped."""

    model: torch.nn.Module  # the bare module (not its DDP or torch.compile wrapper)
    optimizers: dict[str, torch.optim.Optimizer]  # by name: one per set of parameters stepped
    epoch: int = 0  # the epoch in progress, from 0
    batch: int = 0  # batches of that epoch already stepped
    step: int = 0  # optimizer steps so far
    history: list[dict[str, float]] = field(default_factory=list)  # one row per finished epoch
    meter: LossMeter = field(default_factory=LossMeter)  # loss sums of the epoch in progress
    # The MLflow run this training logs to, so that a resumed training continues it; None
    # before it has one (and in checkpoints made before vaelab kept it).
    run_id: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {
                name: optimizer.state_dict() for name, optimizer in self.optimizers.items()
            },
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "history": self.history,
            "meter": self.meter.state_dict(),
            "rng": rng_state(),
            "run_id": self.run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.history = list(state["history"])
        self.meter = LossMeter.from_state_dict(state["meter"])
        set_rng_state(state["rng"])
        self.run_id = state.get("run_id")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    # torch.cuda.is_initialized has no annotations.
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: TrainState, expected_hash: str) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename."""
    with atomic_file(path, "wb") as handle:
        torch.save({**state.state_dict(), "config_hash": expected_hash}, handle)


def restore_checkpoint(path: Path, state: TrainState, expected_hash: str) -> bool:
    """Load the checkpoint at ``path`` into ``state`` if it was made with the same config."""
    if not path.is_file():
        return False
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path}: not a readable checkpoint ({reason}); delete it and rerun: the training "
            "then starts from scratch (a checkpoint only saves time, never changes the result)"
        ) from None
    if not isinstance(saved, dict):
        raise UserError(f"{path}: not a vaelab checkpoint; delete it and rerun")
    if saved.get("config_hash") != expected_hash:
        log.info("%s was made with another config; starting afresh", path)
        return False
    state.load_state_dict(saved)
    return True
