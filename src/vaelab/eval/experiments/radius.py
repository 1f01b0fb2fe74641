"""How sharp decodings get as z moves away from the origin (seed 003's r_limit rows)."""

from __future__ import annotations

from vaelab.eval import figures
from vaelab.eval.context import Context
from vaelab.eval.inference import decode_all, prior_draws, to_numpy
from vaelab.eval.metrics import laplacian_variance
from vaelab.eval.result import Result, key_segment


def radius(ctx: Context) -> Result:
    """``radius.laplacian_var.r<r>``: mean Laplacian variance of ``radius_samples`` decodings
    of z uniform in [-r, r] per coordinate, for each r of ``radii`` (row i drawn with
    ``seed + 100 + i``); the rows as a figure, labelled with that number."""
    rows, labels, sharpness = [], [], {}
    for i, r in enumerate(ctx.settings.radii):
        z = prior_draws(ctx.model.latent_shape, ctx.settings.radius_samples, ctx.seed + 100 + i, low=r)
        images = decode_all(ctx.model, z, ctx.batch_size)  # (radius_samples, C, H, W)
        value = float(laplacian_variance(images).numpy().mean())
        sharpness[f"r{key_segment(r)}"] = value
        rows.append(to_numpy(images))
        labels.append(f"r = {r:g}\nLap var {value:.4f}")
    figure = figures.image_rows(rows, title=f"{ctx.variant}: z uniform in [-r, r] per coordinate (seed 003)",
                                row_labels=labels)
    return Result(metrics={"radius": {"laplacian_var": sharpness}}, figures={"radius.png": figure})
