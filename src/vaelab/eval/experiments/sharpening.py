"""Whether post-hoc sharpening makes the reconstructions as sharp as the images (seed 003)."""

from __future__ import annotations

from torch import Tensor

from vaelab.config.evaluate import SharpenConfig
from vaelab.eval import figures
from vaelab.eval.context import Context
from vaelab.eval.inference import to_numpy
from vaelab.eval.metrics import blur_metrics
from vaelab.eval.result import Result, key_segment
from vaelab.eval.sharpen import pil_sharpness, unsharp


def sharpening(ctx: Context) -> Result:
    """``sharpen.<version>.<metric>``: blur metrics of the first ``sharpen.images``
    reconstructions as they are (``none``), through PIL's Sharpness at each factor
    (``pil_<factor>``) and through an unsharp mask (``unsharp``); the first ``show`` of them
    as a figure, a row per version labelled with its mean Laplacian variance."""
    measured, shown = ctx.settings.sharpen.images, ctx.settings.show
    versions = sharpen_variants(ctx.test_pass.first_recons, ctx.settings.sharpen)
    per_image = {key: blur_metrics(images) for key, images in versions.items()}  # key -> metric -> (K,)
    metrics = {
        key: {name: float(values[:measured].mean()) for name, values in by_name.items()}
        for key, by_name in per_image.items()
    }
    figure = figures.image_rows(
        [to_numpy(images[:shown]) for images in versions.values()],
        title=f"{ctx.variant}: reconstructions sharpened (seed 003)",
        row_labels=[f"{key}\nLap var {float(by_name['laplacian_var'][:shown].mean()):.4f}"
                    for key, by_name in per_image.items()],
    )
    return Result(metrics={"sharpen": metrics}, figures={"sharpening.png": figure})


def sharpen_variants(images: Tensor, settings: SharpenConfig) -> dict[str, Tensor]:
    """``(B, C, H, W)`` images unchanged (``none``), through PIL's Sharpness at each factor
    (``pil_<factor>``) and through an unsharp mask (``unsharp``), each ``(B, C, H, W)``."""
    out = {"none": images}
    for factor in settings.factors:
        out[f"pil_{key_segment(factor)}"] = pil_sharpness(images, factor)
    out["unsharp"] = unsharp(images, settings.unsharp_radius, settings.unsharp_amount)
    return out
