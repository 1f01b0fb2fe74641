"""The one batched forward pass over the test split that most experiments read.

Everything per image that needs the model on the test images is computed here, batch by
batch, so that a CelebA-sized split passes through the model once and is never held in
memory as floats (only its first few reconstructions are kept, for sharpening and figures).
Per-image numbers and codes go into arrays made once for the split (:class:`PerImage`), so
the pass's memory does not grow with the split beyond them. What depends on the test images
alone (their blur and spread, :func:`measure_inputs`) is measured once per stage and handed
to the pass of every replicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from vaelab.evaluate.latent_measures import PixelSpread, elbo_terms
from vaelab.measures.image_measures import PerImage, blur_metrics, reconstruction_metrics
from vaelab.measures.spectrum import image_rapsd
from vaelab.models import Autoencoder, VariationalAutoencoder
from vaelab.models.inference import batches, model_device

# What the pass measures the blur and spread of: the test images and their reconstructions.
SOURCES = ("input", "recon")


@dataclass(frozen=True)
class ForwardPass:
    """What one pass of the model over the ``N`` test images leaves for the experiments."""

    # "mse", "psnr", "ssim" -> (N,) float64 (reconstruction_metrics; psnr is inf for a perfect
    # copy).
    recon: dict[str, np.ndarray]
    # "input" / "recon" -> blur metric name (blur_metrics) -> (N,) float64.
    blur: dict[str, dict[str, np.ndarray]]
    # "input" / "recon" -> PixelSpread.spread() over the N images.
    spread: dict[str, float]
    # (N, latent_dim) float32 on the CPU: the encoder's z, flattened (the mean for VAEs).
    codes: Tensor
    # (K, C, H, W) float32 on the model's device: the first K reconstructions.
    first_recons: Tensor
    # VAEs only (None for AEs): "elbo", "recon", "kl" -> (N,) float64, one draw of z per image.
    elbo: dict[str, np.ndarray] | None
    # VAEs only (None for AEs): (N, z_dim) float32 on the CPU, KL(q(z|x) || N(0, I)) per
    # dimension.
    kl_per_dim: Tensor | None
    # "input" / "recon" -> (N, bins) float64: each image's RAPSD (vaelab.measures.spectrum).
    spectra: dict[str, np.ndarray]


@dataclass(frozen=True)
class InputMeasures:
    """The blur metrics and the spread of the test images themselves: the same for every
    model."""

    blur: dict[str, np.ndarray]  # blur metric name (blur_metrics) -> (N,) float64
    spread: float  # PixelSpread.spread() of the N images
    rapsd: np.ndarray  # (N, bins) float64: each image's RAPSD


class SourceMeasures:
    """The blur metrics, RAPSD and pixel spread of one source's images, batch by batch."""

    def __init__(self, count: int) -> None:
        self.blur, self.spectra, self.spread = PerImage(count), PerImage(count), PixelSpread()

    def add(self, rows: slice, images: Tensor) -> None:
        """Measure ``images`` ``(B, C, H, W)`` in [0, 1], the rows ``rows`` of the split."""
        self.blur.put(rows, blur_metrics(images))
        self.spectra.put(rows, {"rapsd": image_rapsd(images)})
        self.spread.add(images)


def measure_inputs(test: np.ndarray, *, batch_size: int, device: torch.device) -> InputMeasures:
    """Measure ``test`` ``(N, H, W, C)`` uint8 as :func:`run_forward_pass` would, in the same
    batches on the same device (so the same bits: the metrics do not depend on the batching)."""
    measured, first = SourceMeasures(len(test)), 0
    for x in batches(test, batch_size, device):
        measured.add(slice(first, first + len(x)), x)
        first += len(x)
    return InputMeasures(
        blur=measured.blur.arrays(),
        spread=measured.spread.spread(),
        rapsd=measured.spectra.arrays()["rapsd"],
    )


@torch.no_grad()
def run_forward_pass(
    model: Autoencoder,
    test: np.ndarray,
    *,
    batch_size: int,
    keep: int,
    seed: int,
    progress: bool,
    inputs: InputMeasures | None = None,
) -> ForwardPass:
    """Run ``model`` (eval mode) over ``test`` ``(N, H, W, C)`` uint8 in batches of
    ``batch_size``.

    ``keep``: how many reconstructions (the first) to hold on to; ``seed`` seeds the one
    generator of the VAE's ELBO draws, used batch after batch in order; ``inputs``: the test
    images' own measures when already made (:func:`measure_inputs`), else measured here.
    """
    generator = torch.Generator().manual_seed(seed)
    count = len(test)
    recon, latent, elbo = PerImage(count), PerImage(count), PerImage(count)
    # The sources still to measure in this pass: the inputs only when nobody has yet.
    sources = {s: SourceMeasures(count) for s in SOURCES if inputs is None or s != "input"}
    kept: list[Tensor] = []
    kept_count = first = 0
    total = math.ceil(count / batch_size)
    for x in tqdm(
        batches(test, batch_size, model_device(model)),
        total=total,
        desc="evaluate",
        unit="batch",
        disable=not progress,
    ):
        rows = slice(first, first + len(x))
        first += len(x)
        outputs = model(x)
        recons = outputs["recon"].float()
        recon.put(rows, reconstruction_metrics(x, recons))
        for source, images in zip(SOURCES, (x, recons), strict=True):
            if source in sources:
                sources[source].add(rows, images)
        latent.put(rows, {"codes": outputs["z"].flatten(1).float()})
        if kept_count < keep:
            kept.append(recons[: keep - kept_count])
            kept_count += len(kept[-1])
        if isinstance(model, VariationalAutoencoder):
            terms = elbo_terms(model, x, generator, codes=outputs)
            elbo.put(rows, {name: terms[name].cpu().double() for name in ("elbo", "recon", "kl")})
            latent.put(rows, {"kl_per_dim": terms["kl_per_dim"]})
    latent_arrays = latent.arrays()
    blurs = {source: m.blur.arrays() for source, m in sources.items()}
    spread = {source: m.spread.spread() for source, m in sources.items()}
    rapsds = {source: m.spectra.arrays()["rapsd"] for source, m in sources.items()}
    if inputs is not None:
        blurs, spread = {"input": inputs.blur, **blurs}, {"input": inputs.spread, **spread}
        rapsds = {"input": inputs.rapsd, **rapsds}
    return ForwardPass(
        recon=recon.arrays(),
        blur=blurs,
        spread=spread,
        codes=torch.from_numpy(latent_arrays["codes"]),
        first_recons=torch.cat(kept),
        elbo=elbo.arrays() if model.is_variational else None,
        kl_per_dim=torch.from_numpy(latent_arrays["kl_per_dim"]) if model.is_variational else None,
        spectra=rapsds,
    )
