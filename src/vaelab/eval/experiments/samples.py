"""What decoded draws from the prior look like (seed 003: an AE's latent space is no generative model)."""

from __future__ import annotations

from vaelab.eval import figures
from vaelab.eval.context import Context
from vaelab.eval.inference import to_numpy
from vaelab.eval.result import Result

# The figure shows at most this many samples, this many to a row.
SHOWN, PER_ROW = 64, 8


def samples(ctx: Context) -> Result:
    """The first 64 decoded draws z ~ N(0, I), 8 to a row (their metrics: the blur experiment)."""
    if not ctx.draw:
        return Result()
    images = to_numpy(ctx.samples[:SHOWN])
    rows = [images[i : i + PER_ROW] for i in range(0, len(images), PER_ROW)]
    figure = figures.image_rows(rows, title=f"{ctx.variant} (seed {ctx.replicate}): {len(images)} decoded draws "
                                            "z ~ N(0, I)")
    return Result(figures={"samples.png": figure})

