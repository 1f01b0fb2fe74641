"""Which frequencies the reconstructions and samples keep: radially averaged power spectra.

Per image, the RAPSD of its greyscale (:mod:`vaelab.measures.spectrum`); from it two scalars
that claims are decided on, and curves for the report's spectral figure:

- ``spectrum.half_power.<set>``: the half-power frequency of each reconstruction's spectrum
  over its own input's (1.0 for the inputs themselves): where a reconstruction has lost half
  the power, as a fraction of Nyquist. Lower is blurrier.
- ``spectrum.half_power_ref.<set>``: the same against the test images' mean spectrum, for
  every set (inputs, reconstructions, prior and GMM samples), so that samples, which have no
  input of their own, are measured too.
- ``spectrum.hf_error.<set>``: the relative spectral error ``set / inputs − 1`` of each image
  against the test images' mean spectrum, averaged over the upper half of the frequencies
  (f > 0.5 Nyquist): negative where high frequencies are missing.
- curves ``rapsd.<set>`` (mean over images) and ``ratio.<set>`` (its ratio to the inputs').
"""

from __future__ import annotations

import numpy as np

from vaelab.evaluate.context import Context
from vaelab.evaluate.result import Result, means
from vaelab.measures.spectrum import (
    bin_centres,
    half_power_frequency,
    image_rapsd,
    mean_curves,
    relative_error,
    spectral_ratio,
)

# The upper half of the frequencies, where blur shows: f > 0.5 Nyquist.
HIGH_FROM = 0.5


def spectrum(ctx: Context) -> Result:
    """The spectra of the test images, their reconstructions and the samples (see above)."""
    spectra = dict(ctx.test_pass.spectra)
    for source, images in ctx.sampled.items():
        spectra[source] = image_rapsd(images)
    height, width = ctx.test.shape[1:3]
    centres = bin_centres(height, width)
    reference = spectra["input"].mean(axis=0)
    per_image: dict[str, np.ndarray] = {}
    own = spectral_ratio(spectra["input"], spectra["recon"])
    per_image["spectrum.half_power.input"] = np.ones(len(spectra["input"]))
    per_image["spectrum.half_power.recon"] = half_power_frequency(own, centres)
    high = centres > HIGH_FROM
    for source, psd in spectra.items():
        against_mean = spectral_ratio(np.broadcast_to(reference, psd.shape), psd)
        per_image[f"spectrum.half_power_ref.{source}"] = half_power_frequency(against_mean, centres)
        per_image[f"spectrum.hf_error.{source}"] = relative_error(psd, reference)[:, high].mean(
            axis=1
        )
    curves = {"freq": centres, **mean_curves(spectra)}
    return Result(metrics=means(per_image), per_image=per_image, curves=curves)


def half_power_against(
    inputs_psd: np.ndarray, images: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """(B,) half-power frequencies of ``images``' RAPSD ``(B, bins)`` over their inputs'."""
    return half_power_frequency(spectral_ratio(inputs_psd, images), bin_centres(*shape))
