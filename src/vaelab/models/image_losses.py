"""Structural and frequency reconstruction terms (issue 14): MS-SSIM and the focal frequency loss.

Both take ``(B, C, H, W)`` reconstructions and targets in [0, 1] and return one value per
image, ``(B,)``; a model's loss adds ``weight * term.mean()`` to the term it minimises
(:func:`image_terms`, :func:`add_image_terms`). They are scaled to sit beside the other
reconstruction terms, which are summed over the ``C·H·W`` values of an image:

- ``msssim``: ``(1 − MS-SSIM) · C·H·W``, the dissimilarity per value summed over the image
  (Wang, Simoncelli and Bovik 2003, "Multiscale structural similarity for image quality
  assessment"; Pythae's ``MSSSIM_VAE`` uses 1 − MS-SSIM as its reconstruction loss). MS-SSIM
  is pytorch-msssim's (Gaussian window of σ 1.5, K = (0.01, 0.03), data range 1, a 2×2
  average pool between scales, the channels' values averaged), with the scales and the window
  picked from the image size by :func:`msssim_scales`.
- ``ffl``: the focal frequency loss of Jiang, Dai, Wu and Loy 2021 ("Focal frequency loss for
  image reconstruction and synthesis"), the official ``focal-frequency-loss`` 0.3.0's
  defaults (no patches, per-image spectrum weights), summed over channels and frequencies
  instead of averaged: ``Σ w · |F(x̂) − F(x)|²`` with the orthonormal 2-D DFT of each channel
  and ``w = |F(x̂) − F(x)|^α`` divided by its largest value in the channel, not differentiated.
  By Parseval's theorem, with α = 0 (every ``w`` = 1) it is the summed squared error of the
  ``mse`` reconstruction loss; the focal weights (≤ 1) make it smaller and put it on the
  frequencies the model gets most wrong.

Both are computed in float32 with autocast off, so a bf16 run gets the same terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor

from vaelab.models.losses import LossSettings

# Wang et al. 2003's weights of the five scales, finest first (pytorch-msssim's).
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# The standard window: 11 pixels of a Gaussian with σ 1.5.
MSSSIM_WINDOW = 11
MSSSIM_SIGMA = 1.5
# Scales are added while the coarsest stays at least this many pixels on a side.
MSSSIM_MIN_COARSEST = 8


@dataclass(frozen=True)
class MsssimScales:
    """How MS-SSIM is computed at one image size: ``window`` pixels, ``weights`` of the scales
    (finest first), ``sides`` the image side at each scale."""

    window: int
    weights: tuple[float, ...]
    sides: tuple[int, ...]


def msssim_scales(side: int) -> MsssimScales:
    """The scales and window for ``side``×``side`` images.

    pytorch-msssim's ``ms_ssim`` asserts a side above 16 · (window − 1), 160 px for the
    11-px window, whatever the number of weights. Here: as many of the five scales as keep
    the coarsest side (each scale halves it, rounding up, as the package's pooling does) at
    :data:`MSSSIM_MIN_COARSEST` pixels or more (one scale below that), their weights the first
    of Wang et al.'s renormalised to sum to 1 (all five as published, summing to 1.0001,
    as the package has them), and the 11-px window, or the largest odd
    window that fits the coarsest scale when it is smaller: 16 px → 2 scales of 7 px,
    25 → 2 of 11, 32 → 3 of 7, 64 → 4 of 7, 128 → 5 of 7, and from 161 px (the package's
    own bound for 5 scales of 11 px) the standard 5 of 11.
    """
    if side < 1:
        raise ValueError(f"an image side must be positive, got {side}")
    sides = [side]
    while len(sides) < len(MSSSIM_WEIGHTS) and math.ceil(sides[-1] / 2) >= MSSSIM_MIN_COARSEST:
        sides.append(math.ceil(sides[-1] / 2))
    coarsest = sides[-1]
    window = min(MSSSIM_WINDOW, coarsest if coarsest % 2 else coarsest - 1)
    first = MSSSIM_WEIGHTS[: len(sides)]
    if len(first) < len(MSSSIM_WEIGHTS):
        first = tuple(w / sum(first) for w in first)
    return MsssimScales(window=window, weights=first, sides=tuple(sides))


def ms_ssim(recon: Tensor, target: Tensor, window: int, weights: tuple[float, ...]) -> Tensor:
    """MS-SSIM of each image over ``len(weights)`` scales: ``(B, C, H, W)`` → ``(B,)`` in [0, 1].

    pytorch-msssim's ``ms_ssim`` (its per-scale ``_ssim``, pooling and product, negative
    contrast and structure terms clipped at 0), for any number of scales the image allows at
    ``window``, so also below the package's size assertion. A channel with a term clipped at
    some scale adds 0 to the image's mean over channels, and no gradient (unrelated images).
    """
    channels = recon.shape[1]
    win = _fspecial_gauss_1d(window, MSSSIM_SIGMA).repeat(channels, 1, 1, 1)
    factors = []
    for level, weight in enumerate(weights):
        ssim, contrast = _ssim(recon, target, data_range=1.0, win=win, size_average=False)
        last = level == len(weights) - 1
        factors.append(torch.relu(ssim if last else contrast) ** weight)
        if not last:
            padding = [size % 2 for size in recon.shape[2:]]
            recon = F.avg_pool2d(recon, kernel_size=2, padding=padding)
            target = F.avg_pool2d(target, kernel_size=2, padding=padding)
    return torch.stack(factors).prod(dim=0).mean(dim=1)


def msssim_term(recon: Tensor, target: Tensor) -> Tensor:
    """``(1 − MS-SSIM) · C·H·W`` per image, ``(B,)``, scales from :func:`msssim_scales`;
    0 when equal."""
    recon, target = recon.float(), target.float()
    with torch.autocast(recon.device.type, enabled=False):
        scales = msssim_scales(min(recon.shape[-2:]))
        similarity = ms_ssim(recon, target, scales.window, scales.weights)
        return (1.0 - similarity) * recon[0].numel()


def focal_frequency_term(recon: Tensor, target: Tensor, alpha: float) -> Tensor:
    """The focal frequency loss per image, ``(B,)``: ``Σ w · |F(x̂) − F(x)|²`` over channels and
    frequencies, ``w = |F(x̂) − F(x)|^α`` over its channel's largest, detached; 0 when equal."""
    recon, target = recon.float(), target.float()
    with torch.autocast(recon.device.type, enabled=False):
        # The DFT is linear: one transform of the difference.
        spectrum: Tensor = torch.fft.fft2(recon - target, norm="ortho")
        distance = spectrum.real.square() + spectrum.imag.square()
        with torch.no_grad():
            focus = distance.sqrt() ** alpha
            # A channel reproduced exactly has 0 / 0 weights: 0, as the package sets them.
            focus = torch.nan_to_num(focus / focus.amax(dim=(-2, -1), keepdim=True), nan=0.0).clamp(
                0.0, 1.0
            )
        return (focus * distance).flatten(1).sum(dim=1)


def image_terms(recon: Tensor, target: Tensor, settings: LossSettings) -> dict[str, Tensor]:
    """The batch means of the terms whose weight is above 0: ``msssim``, ``ffl``; ``{}``
    when both are off."""
    terms = {}
    if settings.msssim_weight > 0:
        terms["msssim"] = msssim_term(recon, target).mean()
    if settings.ffl_weight > 0:
        terms["ffl"] = focal_frequency_term(recon, target, settings.ffl_alpha).mean()
    return terms


def add_image_terms(loss: Tensor, terms: dict[str, Tensor], settings: LossSettings) -> Tensor:
    """``loss`` plus each of :func:`image_terms`' terms times its weight; ``loss`` itself
    when they are off."""
    for name, weight in (("msssim", settings.msssim_weight), ("ffl", settings.ffl_weight)):
        if name in terms:
            loss = loss + weight * terms[name]
    return loss
