"""The one place that turns a ``device`` / ``precision`` setting into a torch device and
an autocast dtype: ``train`` (``train.device``, ``train.precision``), ``evaluate``, ``chain``
and ``compare`` (``evaluate.device``) and the served pyfunc all call :func:`select_runtime`.
Training also calls :func:`deterministic`, so that one machine trains the same bytes twice."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vaelab.errors import UserError


@dataclass(frozen=True)
class Runtime:
    """The device a stage runs on and its autocast dtype."""

    device: torch.device
    # None: plain fp32; torch.bfloat16: autocast region for forward and loss.
    autocast_dtype: torch.dtype | None

    @property
    def precision(self) -> str:
        """``"bf16"`` under bf16 autocast, else ``"fp32"``."""
        return "bf16" if self.autocast_dtype is torch.bfloat16 else "fp32"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def select_runtime(
    device: str, precision: str = "fp32", *, key: str, local_rank: int = 0
) -> Runtime:
    """``device`` (auto | cpu | cuda | mps) and ``precision`` (auto | fp32 | bf16) as set in
    params under ``key`` (e.g. ``"train"``), which the error messages name.

    auto picks cuda, then mps, then cpu; bf16 autocast on a GPU that supports it.
    ``local_rank`` chooses the GPU of a torchrun process.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"{key}.device: cuda, but torch sees no CUDA device; use device: auto or cpu"
        )
    if device == "mps" and not _mps_available():
        raise UserError(
            f"{key}.device: mps, but this torch has no MPS device; use device: auto or cpu"
        )
    chosen = torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device(device)

    bf16_ok = chosen.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and chosen.type != "cuda":
        raise UserError(
            f"{key}.precision: bf16 is for GPUs here; on {chosen.type} use precision: auto or fp32"
        )
    if precision == "bf16" and not bf16_ok:
        raise UserError(
            f"{key}.precision: bf16, but this GPU does not support bfloat16; use auto or fp32"
        )
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_ok)
    return Runtime(device=chosen, autocast_dtype=torch.bfloat16 if use_bf16 else None)


# cuBLAS needs a fixed workspace to be deterministic; read when CUDA creates its handles.
CUBLAS_WORKSPACE = ":4096:8"


def deterministic(threads: int | None = None, *, compiled: bool = False) -> int:
    """Make this process's training reproducible bit for bit on a fixed machine; returns
    the number of intra-op CPU threads it will use.

    - ``torch.use_deterministic_algorithms(True, warn_only=True)``: every op with a
      deterministic implementation uses it. None of the CPU ops our models and losses use
      lacks one; on a GPU an op without one (none of ours in torch 2.x: convolutions,
      nearest upsampling, max pooling) warns, naming itself, instead of stopping a run.
      That call also sets ``torch._inductor.config.deterministic``, importing inductor and
      dynamo (2 s of every train stage's start-up); only ``torch.compile`` reads it, so
      without ``compiled`` the same flag is set on ATen alone
      (``torch._C._set_deterministic_algorithms``, what the public call does after the import).
    - cuDNN: no benchmark autotuning (it may pick another kernel on each run) and
      deterministic kernels; cuBLAS gets a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``,
      unless already set).
    - The thread count. A CPU reduction split over more threads adds in another order, so
      the bytes depend on it (1 and 2 threads train different weights). ``threads`` (params
      ``train.threads``) sets it; None keeps the count torch chose at start-up (one per
      physical core, or ``OMP_NUM_THREADS``), which is fixed for a machine and environment.
      ``torch.set_num_threads`` sets OpenMP's and MKL's counts too (``omp_set_num_threads``
      and ``mkl_set_num_threads_local`` in ATen's ParallelOpenMP.cpp) and can be called at
      any time, so no ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` has to be exported before
      torch is imported. The inter-op pool is left alone: eager training does not use it,
      and torch allows setting it only once per process.

    Random numbers are not set here: the training seeds its own generators.
    """
    if compiled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
