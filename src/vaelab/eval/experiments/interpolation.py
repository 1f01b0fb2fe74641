"""What lies between the codes of two test images."""

from __future__ import annotations

import numpy as np

from vaelab.eval import figures
from vaelab.eval.context import Context
from vaelab.eval.inference import decode_all, to_numpy
from vaelab.eval.interpolate import interpolate
from vaelab.eval.result import Result


def interpolation(ctx: Context) -> Result:
    """Walks of ``interpolation.steps`` decoded codes between test images 0 and 1, 2 and 3, …
    (``interpolation.pairs`` walks at most), one walk a row."""
    settings = ctx.settings.interpolation
    pairs = min(settings.pairs, len(ctx.test) // 2)
    ends = ctx.test_pass.codes[: 2 * pairs].view(-1, *ctx.model.latent_shape)  # (2 * pairs, *latent_shape)
    paths = [interpolate(ends[2 * p], ends[2 * p + 1], settings.steps, settings.method) for p in range(pairs)]
    walks = [decode_all(ctx.model, path, ctx.batch_size) for path in paths]  # each (steps, C, H, W)
    figure = figures.image_rows(
        [to_numpy(walk) for walk in walks],
        title=f"{ctx.variant}: {settings.method} interpolation between test images",
        col_labels=[f"t={t:.2f}" for t in np.linspace(0, 1, settings.steps)],
    )
    return Result(figures={"interpolation.png": figure})
