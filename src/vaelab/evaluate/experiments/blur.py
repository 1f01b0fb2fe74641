"""How blurry the test images, their reconstructions and the decoded prior draws are."""

from __future__ import annotations

from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result, means
from vaelab.measures.image_measures import blur_metrics


def blur(ctx: Context) -> Result:
    """``blur.<metric>.<source>``: each blur metric (blur_metrics's names) of the test images
    (``input``), their reconstructions (``recon``) and the samples (``sample``; ``sample_gmm``
    too where the model has a GMM and ``evaluate.sampler`` lists it), per image and averaged."""
    # source -> metric -> (N,)
    per_source = {
        **ctx.test_pass.blur,
        **{source: blur_metrics(images) for source, images in ctx.sampled.items()},
    }
    per_image = {
        f"blur.{name}.{source}": values
        for source, by_name in per_source.items()
        for name, values in by_name.items()
    }
    return Result(metrics=means(per_image), per_image=per_image)
