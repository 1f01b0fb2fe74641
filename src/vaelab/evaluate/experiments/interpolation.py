"""What lies between the codes of two test images: walks between two latent codes (linear, or
spherical to keep the norm of Gaussian codes), decoded."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result
from vaelab.models.inference import decode_all, to_numpy

# Below this angle (radians) slerp's sin(omega) denominator loses precision; the arc is a line
# there.
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


def interpolation(ctx: Context) -> Result:
    """Walks of ``interpolation.steps`` decoded codes between test images 0 and 1, 2 and 3, …
    (``interpolation.pairs`` walks at most), one walk a row that starts and ends with the
    two input images, so the decoded endpoints beside them show what the code loses."""
    if not ctx.draw:
        return Result()
    settings = ctx.settings.interpolation
    pairs = min(settings.pairs, len(ctx.test) // 2)
    # (2 * pairs, *latent_shape)
    ends = ctx.test_pass.codes[: 2 * pairs].view(-1, *ctx.model.latent_shape)
    paths = [
        interpolate(ends[2 * p], ends[2 * p + 1], settings.steps, settings.method)
        for p in range(pairs)
    ]
    walks = [decode_all(ctx.model, path, ctx.batch_size) for path in paths]  # each (steps, C, H, W)
    inputs = ctx.test[: 2 * pairs] / 255.0  # (2 * pairs, H, W, C)
    rows = [
        np.concatenate([inputs[2 * p : 2 * p + 1], to_numpy(walk), inputs[2 * p + 1 : 2 * p + 2]])
        for p, walk in enumerate(walks)
    ]
    decoded = "μ" if ctx.model.is_variational else "codes"
    figure = figures.image_rows(
        rows,
        title=f"{ctx.variant} (seed {ctx.replicate}): {settings.method} interpolation between "
        f"the {decoded} of {pairs} pairs of test images",
        col_labels=["input", *[f"t={t:.2f}" for t in np.linspace(0, 1, settings.steps)], "input"],
    )
    return Result(figures={"interpolation.png": figure})
