"""How close the reconstructions of the test images are to them."""

from __future__ import annotations

import numpy as np

from vaelab import figures
from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result, means
from vaelab.models.inference import to_numpy

# PSNR of a perfect reconstruction is infinite; JSON has no infinity, so cap it.
PSNR_CAP_DB = 100.0


def reconstruction(ctx: Context) -> Result:
    """``recon``: MSE, PSNR (capped) and SSIM over the test split, per image and their means;
    the first ``show`` test images above their reconstructions."""
    per_image = {f"recon.{name}": values for name, values in ctx.test_pass.recon.items()}
    per_image["recon.psnr"] = np.minimum(per_image["recon.psnr"], PSNR_CAP_DB)
    drawn = {}
    if ctx.draw:
        decoded = "μ, the encoder's mean" if ctx.model.is_variational else "the encoder's code"
        drawn["reconstructions.png"] = figures.image_rows(
            [ctx.shown / 255.0, to_numpy(ctx.shown_recons)],
            title=f"{ctx.variant} (seed {ctx.replicate}): the first {len(ctx.shown)} test images "
            f"(top) and their reconstructions, decoded from {decoded}",
            row_labels=["input", "reconstruction"],
        )
    return Result(metrics=means(per_image), per_image=per_image, figures=drawn)
