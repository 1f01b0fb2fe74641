"""What the latent code holds: the ELBO, KL per dimension, active units, and how normal the
codes look."""

from __future__ import annotations

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result, means


def elbo(ctx: Context) -> Result:
    """VAEs: ``elbo`` and ``elbo_terms`` (``recon``, ``kl``), means over the test split of
    one-sample estimates. Nothing for a plain autoencoder."""
    terms = ctx.test_pass.elbo
    if terms is None:
        return Result()
    per_image = {
        "elbo": terms["elbo"],
        **{f"elbo_terms.{name}": terms[name] for name in ("recon", "kl")},
    }
    return Result(metrics=means(per_image), per_image=per_image)


def latent_code(ctx: Context) -> Result:
    """VAEs: ``latent`` — dimensions, mean and largest KL per dimension, active units — and
    the chart of KL per dimension. Nothing for a plain autoencoder."""
    per_image = ctx.test_pass.kl_per_dim
    if per_image is None:
        return Result()
    kl = per_image.double().mean(dim=0)  # (z_dim,)
    active = ctx.active
    drawn = {}
    if ctx.draw:
        drawn["kl_per_dim.png"] = figures.kl_per_dim_chart(
            kl.numpy(),
            active.numpy(),
            threshold=ctx.settings.active_threshold,
            title=f"{ctx.variant} (seed {ctx.replicate}): mean KL per latent dimension over the "
            f"{len(ctx.test)} test images",
        )
    return Result(
        metrics={
            "latent": {
                "dims": int(kl.numel()),
                "kl_per_dim": float(kl.mean()),
                "kl_per_dim_max": float(kl.max()),
                "active_units": int(active.sum()),
            }
        },
        figures=drawn,
    )


def latent_histograms(ctx: Context) -> Result:
    """Histograms of the test split's codes (the first ``histogram_dims`` dimensions and all
    pooled) against N(0, 1) (study 001)."""
    if not ctx.draw:
        return Result()
    codes = ctx.test_pass.codes.numpy()
    dims = list(range(min(ctx.settings.histogram_dims, codes.shape[1])))
    what = "encoder means μ" if ctx.model.is_variational else "latent values"
    figure = figures.latent_histograms(
        codes,
        dims,
        title=f"{ctx.variant} (seed {ctx.replicate}): {what} of all {len(codes)} test images "
        "vs N(0, 1)",
    )
    return Result(figures={"latent_histograms.png": figure})
