"""How much outputs differ from image to image, and whether a VAE's decoder ignores z (study
002)."""

from __future__ import annotations

from vaelab.evaluate.context import Context
from vaelab.evaluate.latent_measures import collapse_verdict
from vaelab.evaluate.result import Result

# A test split of identical images has no spread; the ratios then compare with (almost) zero.
_NO_SPREAD = 1e-12


def spread(ctx: Context) -> Result:
    """``spread.<source>``: the per-pixel standard deviation across the test images
    (``input``), their reconstructions (``recon``) and the samples (``sample``, ``sample_gmm``)."""
    return Result(metrics={"spread": dict(ctx.spreads)})


def collapse(ctx: Context) -> Result:
    """VAEs: ``collapse`` — the spread of reconstructions and of samples over that of the
    images, and the verdict in words (a note), which also weighs the active units. Nothing
    for a plain autoencoder."""
    if not ctx.model.is_variational:
        return Result()
    spreads = ctx.spreads
    recon_ratio = spreads["recon"] / max(spreads["input"], _NO_SPREAD)
    sample_ratio = spreads["sample"] / max(spreads["input"], _NO_SPREAD)
    collapsed, verdict = collapse_verdict(
        recon_ratio,
        sample_ratio,
        ctx.settings.collapse_ratio,
        active=int(ctx.active.sum()),
        dims=int(ctx.active.numel()),
    )
    return Result(
        metrics={
            "collapse": {
                "recon_ratio": recon_ratio,
                "sample_ratio": sample_ratio,
                "collapsed": int(collapsed),
            }
        },
        notes={"collapse": verdict},
    )
