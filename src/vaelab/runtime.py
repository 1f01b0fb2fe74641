"""The one place that turns a ``device`` / ``precision`` setting into a torch device and
an autocast dtype: ``train`` (``train.device``, ``train.precision``), ``evaluate``, ``chain``
and ``compare`` (``evaluate.device``) and the served pyfunc all call :func:`select_runtime`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaelab.errors import UserError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    # None: plain fp32; torch.bfloat16: autocast region for forward and loss.
    autocast_dtype: torch.dtype | None

    @property
    def precision(self) -> str:
        return "bf16" if self.autocast_dtype is torch.bfloat16 else "fp32"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def select_runtime(device: str, precision: str = "fp32", *, key: str, local_rank: int = 0) -> Runtime:
    """``device`` (auto | cpu | cuda | mps) and ``precision`` (auto | fp32 | bf16) as set in
    params under ``key`` (e.g. ``"train"``), which the error messages name.

    auto picks cuda, then mps, then cpu; bf16 autocast on a GPU that supports it.
    ``local_rank`` chooses the GPU of a torchrun process.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}.device: cuda, but torch sees no CUDA device; use device: auto or cpu")
    if device == "mps" and not _mps_available():
        raise UserError(f"{key}.device: mps, but this torch has no MPS device; use device: auto or cpu")
    chosen = torch.device(f"cuda:{local_rank}") if device == "cuda" else torch.device(device)

    bf16_ok = chosen.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and chosen.type != "cuda":
        raise UserError(f"{key}.precision: bf16 is for GPUs here; on {chosen.type} use precision: auto or fp32")
    if precision == "bf16" and not bf16_ok:
        raise UserError(f"{key}.precision: bf16, but this GPU does not support bfloat16; use auto or fp32")
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_ok)
    return Runtime(device=chosen, autocast_dtype=torch.bfloat16 if use_bf16 else None)
