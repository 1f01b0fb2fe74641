"""``train.processes``: how many processes train one variant, and the relaunch of the train
stage under torchrun's standalone launcher when that is more than one.

``dvc repro`` and ``dvc exp run`` start ``python stages/train.py <variant>``, one process.
With ``train.processes: 2`` (or ``auto`` on a machine with several GPUs) that process starts
``python -m torch.distributed.run --standalone --nproc-per-node N stages/train.py <variant>``
and waits for it: N ranks join one process group (nccl on GPUs, gloo on CPUs), DDP averages
their gradients, and rank 0 writes the same outputs and MLflow run a one-process training
writes (:mod:`vaelab.train.distributed`). The bytes differ from a one-process training (each
rank steps over its shard of every epoch), so ``processes`` is part of the checkpoint's key
like every ``train`` setting. Several machines stay a hand-run torchrun per node (README).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from vaelab.config import Params
from vaelab.errors import UserError

# torchrun sets it in every process it starts: a process that has it is a rank already.
RANK_VARIABLE = "WORLD_SIZE"

log = logging.getLogger("vaelab.train")


def wanted_processes(params: Params) -> int:
    """``train.processes`` as a number: ``auto`` is one per visible GPU when training may run
    on one (``train.device`` auto or cuda), else 1."""
    setting = params.train.processes
    if setting != "auto":
        return setting
    if params.train.device not in ("auto", "cuda"):
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def relaunch_command(processes: int, script: Path, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``script argv`` as ``processes`` ranks on this machine."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        str(script),
        *argv,
    ]


def relaunch(params: Params, script: Path, argv: list[str]) -> int | None:
    """Run the stage as ``train.processes`` ranks and return torchrun's exit status; None
    when this process should train itself (one process wanted, or already a rank)."""
    if RANK_VARIABLE in os.environ:
        return None
    processes = wanted_processes(params)
    if processes <= 1:
        return None
    if not script.is_file():
        raise UserError(
            f"train.processes: {processes} relaunches the stage script, but {script} is no "
            "file; run the stage as `python stages/train.py <variant>` or set train.processes: 1"
        )
    command = relaunch_command(processes, script, argv)
    log.info("train.processes: %d ranks under torchrun: %s", processes, " ".join(command[1:]))
    # The ranks inherit this environment: the kernels pinned, the MLflow store, the DVC run.
    return subprocess.run(command, check=False).returncode
