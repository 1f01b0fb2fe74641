"""How blurry the test images, their reconstructions and the decoded prior draws are."""

from __future__ import annotations

from vaelab.eval.context import Context
from vaelab.eval.metrics import blur_metrics
from vaelab.eval.result import Result


def blur(ctx: Context) -> Result:
    """``blur.<metric>.<source>``: each blur metric (blur_metrics's names) averaged over the
    test images (``input``), their reconstructions (``recon``) and the samples (``sample``)."""
    per_source = {**ctx.test_pass.blur, "sample": blur_metrics(ctx.samples)}  # source -> metric -> (N,)
    return Result(metrics={"blur": {
        name: {source: float(by_name[name].mean()) for source, by_name in per_source.items()}
        for name in per_source["sample"]
    }})
