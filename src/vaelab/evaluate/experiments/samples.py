"""What decoded draws from the prior look like (study 003: an AE's latent space is no generative
model), and draws from the ex-post GMM fitted to the training codes (Ghosh et al. 2020), which
may make it one."""

from __future__ import annotations

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result
from vaelab.models.inference import to_numpy

# The figure shows at most this many samples, this many to a row.
SHOWN, PER_ROW = 64, 8
# Each sampler's figure, and what its draws are.
FIGURES = {
    "sample": ("samples.png", "z ~ N(0, I)"),
    "sample_gmm": ("samples_gmm.png", "z ~ the latent GMM"),
}


def samples(ctx: Context) -> Result:
    """The first 64 decoded draws of each sampler, 8 to a row: ``samples.png`` (z ~ N(0, I))
    and, for a model with a GMM, ``samples_gmm.png`` (their metrics: the blur experiment)."""
    if not ctx.draw:
        return Result()
    drawn = {}
    for source, images in ctx.sampled.items():
        name, what = FIGURES[source]
        shown = to_numpy(images[:SHOWN])
        rows = [shown[i : i + PER_ROW] for i in range(0, len(shown), PER_ROW)]
        drawn[name] = figures.image_rows(
            rows, title=f"{ctx.variant} (seed {ctx.replicate}): {len(shown)} decoded draws {what}"
        )
    return Result(figures=drawn)
