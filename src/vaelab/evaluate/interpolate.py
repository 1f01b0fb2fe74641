"""Walks between two latent codes (linear, or spherical to keep the norm of Gaussian codes)."""

from __future__ import annotations

import torch
from torch import Tensor

# Below this angle (radians) slerp's sin(omega) denominator loses precision; the arc is a line there.
_PARALLEL = 1e-4


def interpolate(z0: Tensor, z1: Tensor, steps: int, method: str = "linear") -> Tensor:
    """Codes of any shape ``S`` → ``(steps, *S)``, from ``z0`` to ``z1`` inclusive."""
    if z0.shape != z1.shape:
        raise ValueError(f"codes differ in shape: {tuple(z0.shape)} and {tuple(z1.shape)}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64, device=z0.device)
    a, b = z0.flatten().double(), z1.flatten().double()
    if method == "linear":
        path = (1 - t)[:, None] * a + t[:, None] * b
    elif method == "spherical":
        cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
        omega = torch.arccos(cosine.clamp(-1.0, 1.0))
        if omega < _PARALLEL:
            path = (1 - t)[:, None] * a + t[:, None] * b
        else:
            path = (
                torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b
            ) / torch.sin(omega)
    else:
        raise ValueError(f"unknown interpolation {method!r}; use 'linear' or 'spherical'")
    return path.to(z0.dtype).reshape(steps, *z0.shape)
