"""What lies between the codes of two test images."""

from __future__ import annotations

import numpy as np

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.interpolate import interpolate
from vaelab.evaluate.result import Result
from vaelab.models.inference import decode_all, to_numpy


def interpolation(ctx: Context) -> Result:
    """Walks of ``interpolation.steps`` decoded codes between test images 0 and 1, 2 and 3, …
    (``interpolation.pairs`` walks at most), one walk a row that starts and ends with the
    two input images, so the decoded endpoints beside them show what the code loses."""
    if not ctx.draw:
        return Result()
    settings = ctx.settings.interpolation
    pairs = min(settings.pairs, len(ctx.test) // 2)
    ends = ctx.test_pass.codes[: 2 * pairs].view(
        -1, *ctx.model.latent_shape
    )  # (2 * pairs, *latent_shape)
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
        title=f"{ctx.variant} (seed {ctx.replicate}): {settings.method} interpolation between the {decoded} of "
        f"{pairs} pairs of test images",
        col_labels=["input", *[f"t={t:.2f}" for t in np.linspace(0, 1, settings.steps)], "input"],
    )
    return Result(figures={"interpolation.png": figure})
