"""Whether the model tells faces from non-faces (study 004): AUROC of its anomaly scores."""

from __future__ import annotations

import numpy as np
import torch

from vaelab.evaluate.context import Context
from vaelab.evaluate.latent_measures import elbo_terms
from vaelab.evaluate.result import Result
from vaelab.measures.image_measures import auroc
from vaelab.models import VariationalAutoencoder
from vaelab.models.inference import batches, model_device


@torch.no_grad()
def ood(ctx: Context) -> Result:
    """``ood``: AUROC of test faces against the out-of-distribution split, scored by
    reconstruction MSE (and, for VAEs, by the negative ELBO, drawn with ``seed + 1``).
    A note instead when the data set has no such split, and one when the ELBO ranks the
    outliers as more likely than the faces (AUROC below 0.5)."""
    if not ctx.data.has_split("ood"):
        return Result(
            notes={
                "ood": "no out-of-distribution split in this data set (lfw's non-faces are one); "
                "AUROC not measured"
            }
        )
    model, outliers = ctx.model, ctx.data.split("ood")
    errors, elbos = [], []
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    for x in batches(outliers, ctx.batch_size, model_device(model)):
        outputs = model(x)
        errors.append(
            (outputs["recon"].float() - x).square().flatten(1).mean(dim=1).cpu().double().numpy()
        )
        if isinstance(model, VariationalAutoencoder):
            elbos.append(
                elbo_terms(model, x, generator, codes=outputs)["elbo"].cpu().double().numpy()
            )
    faces = ctx.test_pass  # the inliers
    result = {
        "auroc_recon_error": auroc(faces.recon["mse"], np.concatenate(errors)),
        "inliers": len(faces.recon["mse"]),
        "outliers": len(outliers),
    }
    notes = {}
    if faces.elbo is not None:
        result["auroc_neg_elbo"] = auroc(-faces.elbo["elbo"], -np.concatenate(elbos))
        if result["auroc_neg_elbo"] < 0.5:
            notes["ood"] = (
                f"AUROC of the negative ELBO is {result['auroc_neg_elbo']:.3f}, below chance: "
                "the model gives the out-of-distribution images the higher likelihood (the known "
                "likelihood paradox of deep generative models, Nalisnick et al. 2019), so its "
                "likelihood is no anomaly score here."
            )
    return Result(metrics={"ood": result}, notes=notes)
