"""Which CPU kernels compute vaelab's numbers: pinned to one instruction set, so that two
x86-64 CPU models train and evaluate the same bytes (``train.portable_kernels``).

torch, oneDNN, MKL, OpenBLAS and numpy each pick their kernels for the CPU they find, at
the moment they load: an AVX-512 machine and an AVX2 machine add in another order and so
train other weights from the same inputs. Each library has an environment variable that
caps its choice; :data:`PINS` sets every one of them to AVX2, which every x86-64 server CPU
of the last decade has:

- ``ATEN_CPU_CAPABILITY`` — ATen's vectorised CPU kernels (element-wise ops, reductions,
  the optimizer's foreach kernels);
- ``ONEDNN_MAX_CPU_ISA`` — oneDNN's JIT convolutions;
- ``MKL_CBWR`` — MKL's conditional numerical reproducibility branch (matrix products);
- ``OPENBLAS_CORETYPE`` — numpy's and scipy's OpenBLAS (the latent GMM's fit);
- ``NPY_DISABLE_CPU_FEATURES`` — numpy's own AVX-512 loops.

They are read when the libraries load, so :func:`pin` must run before torch or numpy is
imported: every stage script calls it from :func:`vaelab.stage.stage_main` right after
params.yaml is read and before the stage's module is imported. (The thread count matters
as much: a reduction split over another number of threads adds in another order. Training
sets it from ``train.threads``, :func:`vaelab.runtime.deterministic`.)

GPU kernels are not pinned (no such switches exist), and aarch64 has none of these
instruction sets: there :func:`pin` sets nothing. :func:`in_force` is what each stage
records (timing and detail files, the training checkpoint's key), so a result says which
kernels made it and a change of the setting retrains rather than resumes.
"""

from __future__ import annotations

import os
import platform
import sys

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
# The libraries that read PINS when they load: pinning after one of them is too late.
READERS = ("torch", "numpy")
X86_64 = frozenset({"x86_64", "amd64"})


def pinnable() -> bool:
    """Whether this machine is x86-64, the only kind the pins mean anything on."""
    return platform.machine().lower() in X86_64


def pin(portable: bool) -> dict[str, str]:
    """Set :data:`PINS` in this process's environment when ``portable`` (and on x86-64),
    before torch and numpy load; returns what was set (empty when not ``portable``).

    A RuntimeError when one of them is already imported with other values in force: its
    kernels are chosen, and a stage would compute with others than it records.
    """
    wanted = dict(PINS) if portable and pinnable() else {}
    differing = sorted(name for name, value in wanted.items() if os.environ.get(name) != value)
    loaded = [name for name in READERS if name in sys.modules]
    if differing and loaded:
        raise RuntimeError(
            f"kernels.pin called after {', '.join(loaded)} was imported; "
            f"{', '.join(differing)} would not take effect"
        )
    os.environ.update(wanted)
    return wanted


def in_force() -> dict[str, str]:
    """The pinning variables set in this process's environment, by name (a stage's record
    of the kernels that computed its numbers; empty: each library chose for this CPU)."""
    return {name: os.environ[name] for name in PINS if name in os.environ}
