"""The RAPSD and the half-power frequency: known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from vaelab.measures.spectrum import (
    bin_centres,
    half_power_frequency,
    rapsd,
    relative_error,
    spectral_ratio,
)


def noise(count: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, size, size))


def half_power(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    centres = bin_centres(*inputs.shape[1:])
    return half_power_frequency(spectral_ratio(rapsd(inputs), rapsd(outputs)), centres)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
def test_a_gaussian_blur_halves_the_power_where_its_transfer_says(sigma):
    images = noise()
    blurred = np.stack([ndimage.gaussian_filter(x, sigma, mode="wrap") for x in images])
    expected = math.sqrt(math.log(2)) / (math.pi * sigma)  # exp(-π² σ² f²) = 1/2
    assert half_power(images, blurred) == pytest.approx(np.full(4, expected), abs=0.02)


def test_identity_keeps_every_frequency():
    images = noise()
    assert (half_power(images, images.copy()) == 1.0).all()
    assert np.allclose(spectral_ratio(rapsd(images), rapsd(images)), 1.0)


def test_scaling_and_shifting_both_images_does_not_move_it():
    images = noise()
    blurred = np.stack([ndimage.gaussian_filter(x, 2.0, mode="wrap") for x in images])
    plain = half_power(images, blurred)
    assert half_power(3.0 * images + 0.7, 3.0 * blurred + 0.7) == pytest.approx(plain, rel=1e-9)
    assert half_power(images + 5.0, blurred - 2.0) == pytest.approx(plain, rel=1e-9)


def test_the_spectrum_drops_dc_and_sums_to_the_variance():
    images = noise(count=2, size=32)
    psd = rapsd(images)
    assert psd.shape == (2, 16)
    assert np.allclose(rapsd(images + 10.0), psd)  # the mean (DC) is not in it
    flat = np.full((1, 32, 32), 0.3)
    assert (rapsd(flat) == 0).all()
    assert (half_power(flat, flat) == 1.0).all()  # no input power: nothing was lost


def test_non_square_images_use_the_shorter_side():
    assert rapsd(np.zeros((1, 16, 40))).shape == (1, 8)


def test_relative_error_is_zero_for_the_reference_itself():
    images = noise()
    mean = rapsd(images).mean(axis=0)
    assert np.allclose(relative_error(mean[None, :], mean), 0.0)
    assert np.allclose(relative_error(2 * mean[None, :], mean), 1.0)
