"""Whether post-hoc sharpening makes the reconstructions as sharp as the images (study 003)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from vaelab import figures
from vaelab.config.evaluate_config import SharpenConfig
from vaelab.evaluate.context import Context
from vaelab.evaluate.experiments.power_spectra import half_power_against
from vaelab.evaluate.experiments.reconstruction import PSNR_CAP_DB
from vaelab.evaluate.result import Result, key_segment, means
from vaelab.evaluate.sharpen_filters import pil_sharpness, unsharp
from vaelab.measures.image_measures import blur_metrics, reconstruction_metrics
from vaelab.measures.spectrum import image_rapsd
from vaelab.models.inference import to_numpy, to_tensor


def sharpening(ctx: Context) -> Result:
    """``sharpen.<version>.<metric>``: the first ``sharpen.images`` reconstructions as they
    are (``none``), through PIL's Sharpness at each factor (``pil_<factor>``) and through an
    unsharp mask (``unsharp``): their blur metrics, and their MSE, PSNR and SSIM against the
    test images they reconstruct, and their half-power frequency over those inputs' spectra
    (vaelab.evaluate.experiments.spectrum) — sharper, but closer to the input or only noisier? The
    first ``show`` of them as a figure, a row per version labelled with its numbers."""
    recons = ctx.test_pass.first_recons[: ctx.settings.sharpen.images]
    inputs = to_tensor(ctx.test[: len(recons)], recons.device)
    versions = sharpen_variants(recons, ctx.settings.sharpen)
    per_image: dict[str, np.ndarray] = {}
    inputs_psd = ctx.test_pass.spectra["input"][: len(recons)]
    for key, images in versions.items():
        measured = {**blur_metrics(images), **reconstruction_metrics(inputs, images.float())}
        measured["psnr"] = np.minimum(measured["psnr"], PSNR_CAP_DB)
        measured["half_power"] = half_power_against(
            inputs_psd, image_rapsd(images.float()), ctx.test.shape[1:3]
        )
        per_image |= {f"sharpen.{key}.{name}": values for name, values in measured.items()}
    drawn = {}
    if ctx.draw:
        shown = ctx.settings.show
        drawn["sharpening.png"] = figures.image_rows(
            [ctx.shown / 255.0, *[to_numpy(images[:shown]) for images in versions.values()]],
            title=f"{ctx.variant} (seed {ctx.replicate}): the first {len(ctx.shown)} "
            f"reconstructions (from μ or the code) sharpened (study 003); numbers over the first "
            f"{len(recons)}",
            row_labels=["input"]
            + [
                f"{key}\nLap var {per_image[f'sharpen.{key}.laplacian_var'].mean():.4f}"
                f"\nMSE {per_image[f'sharpen.{key}.mse'].mean():.4f}"
                for key in versions
            ],
        )
    return Result(metrics=means(per_image), per_image=per_image, figures=drawn)


def sharpen_variants(images: Tensor, settings: SharpenConfig) -> dict[str, Tensor]:
    """``(B, C, H, W)`` images unchanged (``none``), through PIL's Sharpness at each factor
    (``pil_<factor>``) and through an unsharp mask (``unsharp``), each ``(B, C, H, W)``."""
    out = {"none": images}
    for factor in settings.factors:
        out[f"pil_{key_segment(factor)}"] = pil_sharpness(images, factor)
    out["unsharp"] = unsharp(images, settings.unsharp_radius, settings.unsharp_amount)
    return out
