"""How close the reconstructions of the test images are to them."""

from __future__ import annotations

import numpy as np

from vaelab.eval import figures
from vaelab.eval.context import Context
from vaelab.eval.inference import to_numpy
from vaelab.eval.result import Result

# PSNR of a perfect reconstruction is infinite; JSON has no infinity, so cap it.
PSNR_CAP_DB = 100.0


def reconstruction(ctx: Context) -> Result:
    """``recon``: mean MSE, PSNR (capped) and SSIM over the test split; the first ``show``
    test images above their reconstructions."""
    per_image = {**ctx.test_pass.recon, "psnr": np.minimum(ctx.test_pass.recon["psnr"], PSNR_CAP_DB)}
    figure = figures.image_rows(
        [ctx.shown / 255.0, to_numpy(ctx.shown_recons)],
        title=f"{ctx.variant}: test images (top) and reconstructions",
        row_labels=["input", "reconstruction"],
    )
    return Result(
        metrics={"recon": {name: float(values.mean()) for name, values in per_image.items()}},
        figures={"reconstructions.png": figure},
    )
