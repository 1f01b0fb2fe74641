"""The radially averaged power spectrum (RAPSD) of images, and what blur does to it.

Blur removes high frequencies, so the field compares the power spectra of generated and real
images (Durall et al. 2020, "Watch your up-convolution"; Schwarz et al. 2021, "On the
frequency bias of generative models"). Here, per greyscale image: the power ``|FFT|²`` of the
image with its mean removed (so the DC term is dropped), averaged over rings of equal
frequency radius. Frequencies are a fraction of the Nyquist frequency (0.5 cycles per pixel),
in ``min(H, W) // 2`` equal bins over ``(0, 1]``; the corners beyond Nyquist are left out.

For a reconstruction, the **spectral ratio** recon / input per bin says which frequencies it
kept, and its **half-power frequency** is the lowest normalised frequency where that ratio
falls below 0.5 (−3 dB): 1.0 when it never does. A Gaussian blur of σ pixels, whose power
transfer is ``exp(-π² σ² f²)``, has its half-power frequency at ``√(ln 2) / (π σ)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from vaelab.measures.image_measures import to_grey

HALF_POWER = 0.5
NYQUIST = 0.5  # cycles per pixel


def bins_for(height: int, width: int) -> int:
    """How many radial bins an image of this size gets: ``min(H, W) // 2``."""
    return max(1, min(height, width) // 2)


def bin_centres(height: int, width: int) -> np.ndarray:
    """(bins,) float64: the centre of each bin, as a fraction of Nyquist."""
    count = bins_for(height, width)
    return (np.arange(count) + 0.5) / count


@lru_cache(maxsize=16)
def _rings(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each FFT coefficient's bin (-1: DC or beyond Nyquist), and each bin's coefficient count."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius = np.sqrt(fy**2 + fx**2) / NYQUIST  # fraction of Nyquist
    count = bins_for(height, width)
    index = np.ceil(radius * count).astype(np.int64) - 1  # (0, 1/count] -> bin 0
    index[(radius == 0) | (radius > 1.0)] = -1
    sizes = np.bincount(index[index >= 0], minlength=count)
    index.setflags(write=False)
    return index.ravel(), sizes


def rapsd(grey: np.ndarray) -> np.ndarray:
    """(B, H, W) greyscale images → (B, bins) float64: each one's radially averaged power
    spectrum, ``|FFT(x − mean)|² / (H W)`` averaged over each ring."""
    grey = np.asarray(grey, dtype=np.float64)
    if grey.ndim != 3:
        raise ValueError(f"expected (B, H, W) greyscale images, got shape {grey.shape}")
    count, height, width = grey.shape
    centred = grey - grey.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(centred)) ** 2 / (height * width)).reshape(count, -1)
    index, sizes = _rings(height, width)
    inside = index >= 0
    bins = len(sizes)
    flat = (index[inside][None, :] + bins * np.arange(count)[:, None]).ravel()
    totals = np.bincount(flat, weights=power[:, inside].ravel(), minlength=count * bins)
    averaged: np.ndarray = totals.reshape(count, bins) / np.maximum(sizes, 1)
    return averaged


def spectral_ratio(input_psd: np.ndarray, output_psd: np.ndarray) -> np.ndarray:
    """(B, bins) output / input power per bin; 1 where the input has no power at all."""
    input_psd, output_psd = np.asarray(input_psd), np.asarray(output_psd)
    if input_psd.shape != output_psd.shape:
        raise ValueError(f"spectra differ in shape: {input_psd.shape} != {output_psd.shape}")
    ratio = np.ones_like(input_psd, dtype=np.float64)
    np.divide(output_psd, input_psd, out=ratio, where=input_psd > 0)
    return ratio


def half_power_frequency(ratio: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(B, bins) spectral ratios → (B,): the lowest normalised frequency where each falls below
    0.5, linearly interpolated between bin centres (the ratio at frequency 0 taken as 1);
    1.0 where it never does."""
    ratio = np.atleast_2d(np.asarray(ratio, dtype=np.float64))
    freqs = np.concatenate([[0.0], np.asarray(centres, dtype=np.float64)])
    padded = np.concatenate([np.ones((len(ratio), 1)), ratio], axis=1)
    below = padded < HALF_POWER
    found = below.any(axis=1)
    first = np.where(found, below.argmax(axis=1), 1)  # index in padded, >= 1 where found
    rows = np.arange(len(ratio))
    r0, r1 = padded[rows, first - 1], padded[rows, first]
    f0, f1 = freqs[first - 1], freqs[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = f0 + (r0 - HALF_POWER) / (r0 - r1) * (f1 - f0)
    return np.where(found, np.clip(crossing, 0.0, 1.0), 1.0)


def relative_error(psd: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(B, bins) spectra against a (bins,) reference (the test images' mean RAPSD): ``psd /
    reference − 1`` per bin (Schwarz et al.'s relative spectral error); 0 where the reference
    has no power."""
    psd, reference = np.asarray(psd, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return spectral_ratio(np.broadcast_to(reference, psd.shape), psd) - 1.0


def image_rapsd(images: Tensor) -> np.ndarray:
    """(B, C, H, W) images in [0, 1] (any device) → (B, bins) float64: the RAPSD of each one's
    greyscale (scikit-image's luma weights, as the blur measures use)."""
    grey = to_grey(images).to(device="cpu", dtype=torch.float64)[:, 0].numpy()
    return rapsd(grey)


def mean_curves(spectra: dict[str, np.ndarray], reference: str = "input") -> dict[str, np.ndarray]:
    """``{set: (N, bins)}`` → each set's mean RAPSD ``rapsd.<set>`` and, for every other set,
    the ratio of its mean to the reference's ``ratio.<set>`` (Schwarz et al.'s curves)."""
    means = {name: values.mean(axis=0) for name, values in spectra.items()}
    curves = {f"rapsd.{name}": mean for name, mean in means.items()}
    for name, mean in means.items():
        if name != reference:
            curves[f"ratio.{name}"] = spectral_ratio(means[reference], mean)
    return curves
