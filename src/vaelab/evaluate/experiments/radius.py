"""How sharp decodings get as z moves away from the origin (study 003's r_limit rows)."""

from __future__ import annotations

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result, key_segment, means
from vaelab.measures.image_measures import laplacian_variance, normalised_laplacian_variance
from vaelab.models.inference import decode_all, prior_draws, to_numpy


def radius(ctx: Context) -> Result:
    """``radius.laplacian_var.r<r>`` and ``radius.laplacian_var_norm.r<r>``: the Laplacian
    variance, raw and over the intensity variance, of ``radius_samples`` decodings of z
    uniform in [-r, r] per coordinate, for each r of ``radii`` (row i drawn with
    ``seed + 100 + i``); the rows as a figure, labelled with both numbers. Far from the
    origin decodings saturate, which raises the raw number without any sharper detail."""
    rows, labels, per_image = [], [], {}
    for i, r in enumerate(ctx.settings.radii):
        z = prior_draws(
            ctx.model.latent_shape, ctx.settings.radius_samples, ctx.seed + 100 + i, low=r
        )
        images = decode_all(ctx.model, z, ctx.batch_size)  # (radius_samples, C, H, W)
        raw, normalised = (
            laplacian_variance(images).numpy(),
            normalised_laplacian_variance(images).numpy(),
        )
        per_image[f"radius.laplacian_var.r{key_segment(r)}"] = raw
        per_image[f"radius.laplacian_var_norm.r{key_segment(r)}"] = normalised
        rows.append(to_numpy(images))
        labels.append(f"r = {r:g}\nLap var {raw.mean():.4f}\nnormalised {normalised.mean():.3f}")
    drawn = {}
    if ctx.draw:
        drawn["radius.png"] = figures.image_rows(
            rows,
            row_labels=labels,
            title=f"{ctx.variant} (seed {ctx.replicate}): {ctx.settings.radius_samples} "
            "decodings per row of z uniform in [-r, r] per coordinate (study 003)",
        )
    return Result(metrics=means(per_image), per_image=per_image, figures=drawn)
