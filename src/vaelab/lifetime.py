"""A stage process ends when the process that started it (``dvc``, ``torchrun``) dies.

Without this, ``kill -9`` of ``dvc repro`` leaves its stage training on, and the orphan
later overwrites the outputs of the user's next run. On Linux the kernel sends the stage
``SIGTERM`` when its parent exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing is
armed. ``SIGTERM`` is turned into :class:`SystemExit`, so that ``finally`` blocks run: the
atomic writes remove their temporaries and an MLflow run is ended as failed, not left
RUNNING.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
TERMINATED = 128 + signal.SIGTERM  # the shell's exit status for a process ended by SIGTERM


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(TERMINATED)


def exit_with_parent() -> bool:
    """Arm the parent-death signal for this process; returns whether it is armed (Linux only)."""
    signal.signal(signal.SIGTERM, _terminate)
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died before the signal was armed: then this process was already
    # handed to init (or a subreaper), and no signal will come.
    if os.getppid() != parent:
        _terminate(signal.SIGTERM, None)
    return True
