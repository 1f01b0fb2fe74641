"""Tests for vaelab.measures.image_measures and vaelab.evaluate.sharpen_filters: blur,
reconstruction, AUROC, colour, sharpening."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import color, data, filters, measure, metrics, transform

from vaelab.evaluate.sharpen_filters import pil_sharpness, unsharp
from vaelab.measures import image_measures as metrics_module
from vaelab.measures.image_measures import (
    LAPLACIAN_KERNEL,
    PerImage,
    auroc,
    blur_effect,
    blur_metrics,
    colour_distances,
    colour_shift,
    hf_energy_fraction,
    laplacian,
    laplacian_variance,
    normalised_laplacian_variance,
    reconstruction_metrics,
    to_grey,
)

SIZE = 48


def camera_batch(channels: int) -> torch.Tensor:
    """(1, channels, SIZE, SIZE) float32 in [0, 1]: the camera man, small; colour from
    skimage's astronaut."""
    if channels == 1:
        image = transform.resize(data.camera(), (SIZE, SIZE), anti_aliasing=True)[None]
    else:
        image = np.moveaxis(
            transform.resize(data.astronaut(), (SIZE, SIZE), anti_aliasing=True), -1, 0
        )
    return torch.from_numpy(np.ascontiguousarray(image)).float()[None]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each (C, H, W) image spatially only (channels kept apart)."""
    blurred = [
        np.stack([filters.gaussian(channel.double().numpy(), sigma=sigma) for channel in image])
        for image in images
    ]
    return torch.from_numpy(np.stack(blurred)).to(images.dtype)


def checkerboard(size: int) -> torch.Tensor:
    rows, cols = np.indices((size, size))
    return torch.from_numpy(((rows + cols) % 2).astype(np.float32))[None, None]


def smooth_cosine(size: int, cycles: int = 1) -> torch.Tensor:
    """One low-frequency cosine across the image (periodic, so the FFT sees no edge)."""
    cols = np.arange(size)
    row = 0.5 + 0.5 * np.cos(2 * np.pi * cycles * cols / size)
    return torch.from_numpy(np.tile(row, (size, 1)).astype(np.float32))[None, None]


# --- to_grey -------------------------------------------------------------------------------


def test_to_grey_matches_skimage_rgb2gray() -> None:
    images = torch.rand(
        3, 3, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    grey = to_grey(images)
    assert grey.shape == (3, 1, 10, 12)
    assert grey.dtype == torch.float64
    for image, grey_image in zip(images, grey, strict=True):
        expected = color.rgb2gray(np.moveaxis(image.numpy(), 0, -1))
        np.testing.assert_allclose(grey_image[0].numpy(), expected, rtol=0, atol=1e-12)


def test_to_grey_keeps_single_channel_and_dtype() -> None:
    images = torch.rand(2, 1, 5, 5)
    assert torch.equal(to_grey(images), images)
    assert to_grey(torch.rand(2, 3, 5, 5)).dtype == torch.float32


@pytest.mark.parametrize("shape", [(2, 2, 5, 5), (5, 5), (1, 4, 8, 8)])
def test_to_grey_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"shape|channels"):
        to_grey(torch.rand(shape))


# --- Laplacian variance --------------------------------------------------------------------


def test_laplacian_variance_of_constant_image_is_zero() -> None:
    variance = laplacian_variance(torch.full((2, 3, 9, 9), 0.37))
    assert variance.dtype == torch.float64
    assert variance.device.type == "cpu"
    assert variance.shape == (2,)
    assert torch.all(variance.abs() < 1e-20)


def test_laplacian_variance_matches_hand_computation() -> None:
    rng = np.random.default_rng(1)
    images = rng.random((4, 1, 11, 13))
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    expected = []
    for image in images[:, 0]:
        # ndimage.convolve pads; the valid part is where the kernel fits, i.e. drop a 1 px border.
        full = ndimage.convolve(image, kernel, mode="constant")
        valid = full[1:-1, 1:-1]
        by_slicing = (
            image[:-2, 1:-1]
            + image[2:, 1:-1]
            + image[1:-1, :-2]
            + image[1:-1, 2:]
            - 4 * image[1:-1, 1:-1]
        )
        np.testing.assert_allclose(valid, by_slicing, atol=1e-12)
        expected.append(valid.var())
    got = laplacian_variance(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(70, 1, 32, 32), (9, 1, 64, 64), (3, 1, 3, 7), (2, 1, 17, 5)])
def test_laplacian_is_conv2d_within_an_ulp_and_the_same_bits_in_numpy_and_torch(
    shape: tuple[int, ...],
) -> None:
    """The five taps added as slices in kernel order: conv2d's float64 values (the old
    implementation's) to the last bit where conv2d adds in that order, within one rounding
    where its kernel for the shape and CPU adds in another (on an AMD EPYC, widths 5 and 7),
    on smooth and rough images alike; numpy and torch inputs give the same bits."""
    rough = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for grey in (rough, torch.nn.functional.avg_pool2d(rough, 3, 1, 1)):
        kernel = torch.tensor(LAPLACIAN_KERNEL, dtype=torch.float64).view(1, 1, 3, 3)
        by_conv2d = torch.nn.functional.conv2d(grey, kernel)
        ours = laplacian(grey)
        # The taps are at most 4 in size: one rounding of a sum of at most 8 is 8 * 2**-53.
        torch.testing.assert_close(ours, by_conv2d, rtol=0, atol=8 * 2.0**-53)
        np.testing.assert_array_equal(laplacian(grey.numpy()), ours.numpy())
        assert torch.equal(laplacian_variance(grey), ours.flatten(1).var(dim=1, correction=0))


def test_laplacian_variance_of_colour_image_uses_grey() -> None:
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(laplacian_variance(images), laplacian_variance(to_grey(images)))


def test_laplacian_variance_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match="3x3"):
        laplacian_variance(torch.rand(1, 1, 2, 5))


# --- hf energy ---------------------------------------------------------------------------------


def test_hf_energy_of_checkerboard_is_one() -> None:
    assert hf_energy_fraction(checkerboard(16)).item() == pytest.approx(1.0, abs=1e-12)


def test_hf_energy_of_low_frequency_cosine_is_near_zero() -> None:
    assert hf_energy_fraction(smooth_cosine(32)).item() == pytest.approx(0.0, abs=1e-12)


def test_hf_energy_of_smooth_ramps() -> None:
    # A tent (0 -> 1 -> 0) is continuous when the FFT wraps it around: almost no high frequencies.
    tent = 1 - torch.abs(torch.linspace(-1, 1, 33)[:32])
    assert hf_energy_fraction(tent.expand(32, 32)[None, None]).item() < 0.01
    # A one-way ramp jumps from 1 back to 0 at the wrap, and that edge carries a few percent.
    ramp = torch.linspace(0, 1, 32).expand(32, 32)[None, None]
    assert 0.01 < hf_energy_fraction(ramp).item() < 0.1


def test_hf_energy_cutoff_moves_the_boundary() -> None:
    # A cosine at 0.25 cycles/pixel sits exactly at half the Nyquist radius: not above it.
    quarter = smooth_cosine(16, cycles=4)
    assert hf_energy_fraction(quarter, cutoff=0.5).item() == pytest.approx(0.0, abs=1e-12)
    assert hf_energy_fraction(quarter, cutoff=0.4).item() == pytest.approx(1.0, abs=1e-12)


def test_hf_energy_of_constant_image_is_zero_not_nan() -> None:
    fraction = hf_energy_fraction(torch.full((2, 1, 8, 8), 0.5))
    assert fraction.dtype == torch.float64
    assert fraction.device.type == "cpu"
    assert torch.equal(fraction, torch.zeros(2, dtype=torch.float64))


# --- blur on a real image ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_blurring_lowers_sharpness_on_all_three_measures(channels: int) -> None:
    original = camera_batch(channels)
    blurred = gaussian_blur(original, sigma=1.5)
    sharp, soft = blur_metrics(original), blur_metrics(blurred)
    assert soft["laplacian_var"][0] < 0.5 * sharp["laplacian_var"][0]
    assert soft["hf_energy"][0] < 0.5 * sharp["hf_energy"][0]
    assert soft["blur_effect"][0] > sharp["blur_effect"][0]


def test_blur_metrics_keys_types_and_batch_order() -> None:
    batch = torch.cat(
        [camera_batch(1), gaussian_blur(camera_batch(1), 2.0), torch.rand(1, 1, SIZE, SIZE)]
    )
    result = blur_metrics(batch)
    assert set(result) == {"laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect"}
    for values in result.values():
        assert isinstance(values, np.ndarray)
        assert values.dtype == np.float64
        assert values.shape == (3,)
    # The random image is the sharpest, the blurred camera the blurriest.
    assert np.argmax(result["laplacian_var"]) == 2
    assert np.argmin(result["laplacian_var"]) == 1
    assert np.argmax(result["blur_effect"]) == 1


def test_normalised_sharpness_ignores_contrast_and_brightness() -> None:
    image = camera_batch(1)
    scaled = 0.3 * image + 0.2  # less contrast, brighter: the same edges
    raw, normalised = laplacian_variance, normalised_laplacian_variance
    assert float(raw(scaled)[0]) == pytest.approx(
        0.09 * float(raw(image)[0]), rel=1e-5
    )  # float32 pixels
    assert float(normalised(scaled)[0]) == pytest.approx(float(normalised(image)[0]), rel=1e-5)
    assert float(normalised(gaussian_blur(image, 2.0))[0]) < 0.5 * float(normalised(image)[0])
    assert float(normalised(torch.full((1, 1, 8, 8), 0.4))[0]) == 0.0  # flat: no edges, no contrast


def test_blur_effect_is_in_unit_interval_and_one_for_constant() -> None:
    values = blur_effect(torch.cat([torch.rand(2, 3, 16, 16), torch.full((1, 3, 16, 16), 0.2)]))
    assert values.shape == (3,)
    assert np.all((values >= 0) & (values <= 1))
    assert values[2] == pytest.approx(1.0)


def random_pairs(
    count: int, channels: int, height: int, width: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 test images (half smooth, half noise, one flat) and noisy reconstructions of them."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, channels, height, width, generator=generator)
    images[: count // 2] = torch.nn.functional.avg_pool2d(images[: count // 2], 3, 1, 1)
    images[-1] = 0.4
    recons = (images + 0.08 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    return images, recons


def hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) -> the float64 (H, W) or (H, W, C) array the per-image implementation gave
    scikit-image."""
    array = image.to(torch.float64).numpy()
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


# Batches that span several pieces (a last piece of one included) and sizes whose SSIM
# window shrinks.
BATCHED_SHAPES = [
    (90, 3, 16, 16),
    (70, 1, 32, 32),
    (10, 3, 64, 64),
    (41, 1, 64, 64),
    (5, 3, 6, 6),
    (4, 1, 3, 9),
]


@pytest.mark.parametrize("shape", BATCHED_SHAPES)
def test_batched_psnr_and_ssim_are_skimage_per_image_to_the_last_bit(
    shape: tuple[int, ...],
) -> None:
    """Known answer: scikit-image's peak_signal_noise_ratio and structural_similarity called image
    by image (the per-image implementation this replaces) — equal, so within 1e-6 a fortiori."""
    inputs, recons = random_pairs(*shape)
    result = reconstruction_metrics(inputs, recons)
    window = min(7, *(side if side % 2 else side - 1 for side in shape[2:]))
    channel_axis = -1 if shape[1] == 3 else None
    psnr = [
        metrics.peak_signal_noise_ratio(hwc(a), hwc(b), data_range=1.0)
        for a, b in zip(inputs, recons, strict=True)
    ]
    ssim = [
        metrics.structural_similarity(
            hwc(a), hwc(b), data_range=1.0, channel_axis=channel_axis, win_size=window
        )
        for a, b in zip(inputs, recons, strict=True)
    ]
    np.testing.assert_array_equal(result["psnr"], psnr)
    np.testing.assert_array_equal(result["ssim"], ssim)


@pytest.mark.parametrize("shape", BATCHED_SHAPES)
def test_batched_blur_effect_is_skimage_per_image_to_the_last_bit(shape: tuple[int, ...]) -> None:
    """Known answer: skimage.measure.blur_effect of each grey image (an inner region of nothing,
    3 px high, gives scikit-image's nan, here too)."""
    images, _ = random_pairs(*shape)
    with np.errstate(invalid="ignore"):
        expected = [
            measure.blur_effect(grey[0].to(torch.float64).numpy()) for grey in to_grey(images)
        ]
        np.testing.assert_array_equal(blur_effect(images), expected)
        np.testing.assert_array_equal(blur_metrics(images)["blur_effect"], expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_per_image_values_do_not_depend_on_the_batch(channels: int) -> None:
    """A split measured batch by batch, in any batch sizes (one image alone included), gives the
    numbers of measuring it at once: the streaming stages rely on it."""
    inputs, recons = random_pairs(23, channels, 20, 24, seed=channels)
    whole_blur, whole_recon = blur_metrics(recons), reconstruction_metrics(inputs, recons)
    whole_colour = colour_distances(inputs, recons)
    for size in (1, 2, 5, 22):
        parts = [slice(start, start + size) for start in range(0, 23, size)]
        blur = [blur_metrics(recons[part]) for part in parts]
        recon = [reconstruction_metrics(inputs[part], recons[part]) for part in parts]
        for name, values in whole_blur.items():
            np.testing.assert_array_equal(
                np.concatenate([b[name] for b in blur]), values, err_msg=f"{name}, {size}"
            )
        for name, values in whole_recon.items():
            np.testing.assert_array_equal(
                np.concatenate([r[name] for r in recon]), values, err_msg=f"{name}, {size}"
            )
        assert torch.equal(
            torch.cat([colour_distances(inputs[part], recons[part]) for part in parts]),
            whole_colour,
        )
        single = [laplacian_variance(recons[part]) for part in parts]
        assert torch.equal(torch.cat(single), torch.from_numpy(whole_blur["laplacian_var"]))


def test_metrics_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The metrics run torch on one thread; on the caller's threads every value is the same."""
    inputs, recons = random_pairs(40, 3, 32, 32)
    one_thread = {**blur_metrics(recons), **reconstruction_metrics(inputs, recons)}
    monkeypatch.setattr(metrics_module, "_one_thread", contextlib.nullcontext)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        caller = {**blur_metrics(recons), **reconstruction_metrics(inputs, recons)}
    finally:
        torch.set_num_threads(threads)
    for name, values in one_thread.items():
        np.testing.assert_array_equal(caller[name], values, err_msg=name)


def test_one_thread_gives_the_thread_count_back() -> None:
    threads = torch.get_num_threads()
    with metrics_module._one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with pytest.raises(RuntimeError), metrics_module._one_thread():
        raise RuntimeError
    assert torch.get_num_threads() == threads


def test_per_image_arrays_are_filled_row_by_row() -> None:
    values = PerImage(5)
    values.put(
        slice(0, 2),
        {"a": np.array([1.0, 2.0]), "codes": torch.arange(6, dtype=torch.float32).view(2, 3)},
    )
    values.put(slice(2, 5), {"a": np.array([3.0, 4.0, 5.0]), "codes": torch.zeros(3, 3)})
    arrays = values.arrays()
    np.testing.assert_array_equal(arrays["a"], [1, 2, 3, 4, 5])
    assert arrays["codes"].shape == (5, 3) and arrays["codes"].dtype == np.float32
    np.testing.assert_array_equal(arrays["codes"][:2], [[0, 1, 2], [3, 4, 5]])


def test_pieces_never_leave_one_image_alone() -> None:
    pieces = metrics_module._pieces
    assert pieces(0, 4) == [slice(0, 0)]
    assert pieces(1, 4) == [slice(0, 1)]
    assert pieces(9, 4) == [slice(0, 4), slice(4, 9)]
    assert pieces(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert metrics_module._piece_size(64, 64 * 3) == 2 and metrics_module._piece_size(8, 8) == 511


# --- reconstruction metrics ----------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_have_ssim_one_psnr_inf_mse_zero(channels: int) -> None:
    images = torch.rand(2, channels, 16, 16)
    result = reconstruction_metrics(images, images.clone())
    assert set(result) == {"mse", "psnr", "ssim"}
    np.testing.assert_array_equal(result["mse"], [0.0, 0.0])
    assert np.all(np.isposinf(result["psnr"]))
    np.testing.assert_allclose(result["ssim"], [1.0, 1.0])


def test_psnr_of_constant_offset_is_twenty_db() -> None:
    inputs = torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64)
    result = reconstruction_metrics(inputs, inputs + 0.1)
    assert result["mse"][0] == pytest.approx(0.01)
    assert result["psnr"][0] == pytest.approx(20.0)


def test_psnr_and_ssim_match_skimage_per_image() -> None:
    rng = torch.Generator().manual_seed(3)
    inputs = torch.rand(3, 3, 12, 10, generator=rng, dtype=torch.float64)
    recons = (inputs + 0.05 * torch.randn(3, 3, 12, 10, generator=rng, dtype=torch.float64)).clamp(
        0, 1
    )
    result = reconstruction_metrics(inputs, recons)
    for index in range(3):
        original = np.moveaxis(inputs[index].numpy(), 0, -1)
        recon = np.moveaxis(recons[index].numpy(), 0, -1)
        mse = float(np.mean((original - recon) ** 2))
        assert result["mse"][index] == pytest.approx(mse, rel=1e-12)
        assert result["psnr"][index] == pytest.approx(10 * math.log10(1.0 / mse), rel=1e-12)
        expected_ssim = metrics.structural_similarity(
            original, recon, data_range=1.0, channel_axis=-1
        )
        assert result["ssim"][index] == pytest.approx(expected_ssim, rel=1e-12)
    assert np.all(result["ssim"] < 1.0)


@pytest.mark.parametrize(("side", "window"), [(6, 5), (5, 5), (4, 3), (3, 3)])
def test_ssim_window_shrinks_for_small_images(side: int, window: int) -> None:
    rng = torch.Generator().manual_seed(side)
    inputs = torch.rand(1, 1, side, side + 4, generator=rng, dtype=torch.float64)
    recons = (inputs * 0.8).clamp(0, 1)
    result = reconstruction_metrics(inputs, recons)
    expected = metrics.structural_similarity(
        inputs[0, 0].numpy(), recons[0, 0].numpy(), data_range=1.0, win_size=window
    )
    assert result["ssim"][0] == pytest.approx(expected, rel=1e-12)


def test_ssim_refuses_images_smaller_than_three_pixels() -> None:
    with pytest.raises(ValueError, match="3x3"):
        reconstruction_metrics(torch.rand(1, 1, 2, 8), torch.rand(1, 1, 2, 8))


def test_reconstruction_metrics_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_metrics(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9))


# --- auroc -------------------------------------------------------------------------------------


def test_auroc_separable_reversed_and_identical() -> None:
    assert auroc([0.1, 0.2, 0.3], [0.7, 0.8]) == 1.0
    assert auroc([0.7, 0.8], [0.1, 0.2, 0.3]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [0.5, 0.5]) == 0.5
    assert isinstance(auroc(np.array([0.0]), torch.tensor([1.0]).numpy()), float)


def test_auroc_partial_overlap() -> None:
    # Pairs (inlier, outlier): outlier above in 3 of 4, so 0.75.
    assert auroc([0.0, 2.0], [1.0, 3.0]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_is_scikit_learns_roc_auc_score(seed: int) -> None:
    # Ties within and across the two sides (scores rounded to a few values), sizes uneven.
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    inliers = np.round(rng.normal(0.0, 1.0, 40 + seed * 17), 1)
    outliers = np.round(rng.normal(0.5, 1.0, 25 + seed * 5), 1)
    labels = np.concatenate([np.zeros(inliers.size), np.ones(outliers.size)])
    expected = roc_auc_score(labels, np.concatenate([inliers, outliers]))
    assert auroc(inliers, outliers) == pytest.approx(expected, rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_auroc_rejects_non_finite_scores(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        auroc([0.1, bad], [0.3])


@pytest.mark.parametrize(("inliers", "outliers"), [([], [1.0]), ([1.0], []), ([], [])])
def test_auroc_rejects_empty_side(inliers: list[float], outliers: list[float]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        auroc(inliers, outliers)


# --- colour shift ------------------------------------------------------------------------------


def test_colour_shift_known_value() -> None:
    reference = torch.zeros(2, 3, 4, 4)
    images = reference.clone()
    images[0, 0] += 0.3  # first image: red moved by 0.3, green by 0.4 -> distance 0.5
    images[0, 1] += 0.4
    # second image: a half-image change in blue moves its mean by 0.1 -> distance 0.1
    images[1, 2, :2] = 0.2
    assert colour_shift(reference, images) == pytest.approx((0.5 + 0.1) / 2)
    assert colour_shift(images, images) == 0.0


def test_colour_shift_single_channel_and_batch_mismatch() -> None:
    assert colour_shift(torch.zeros(1, 1, 3, 3), torch.full((1, 1, 3, 3), 0.25)) == pytest.approx(
        0.25
    )
    with pytest.raises(ValueError, match="batch size"):
        colour_shift(torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4))


# --- sharpening ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_pil_sharpness_factor_one_is_uint8_identity(channels: int) -> None:
    images = torch.rand(2, channels, 13, 17, dtype=torch.float64)
    result = pil_sharpness(images, 1.0)
    assert result.shape == images.shape
    assert result.dtype == images.dtype
    torch.testing.assert_close(result, torch.round(images * 255) / 255, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_pil_sharpness_factor_three_sharpens_smooth_image(channels: int) -> None:
    smooth = gaussian_blur(camera_batch(channels), sigma=1.0)
    sharpened = pil_sharpness(smooth, 3.0)
    assert sharpened.shape == smooth.shape
    assert sharpened.dtype == torch.float32
    assert sharpened.min() >= 0.0 and sharpened.max() <= 1.0
    assert laplacian_variance(sharpened)[0] > 1.5 * laplacian_variance(smooth)[0]


def test_pil_sharpness_factor_zero_smooths() -> None:
    images = camera_batch(1)
    assert laplacian_variance(pil_sharpness(images, 0.0))[0] < laplacian_variance(images)[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_unsharp_raises_laplacian_variance_and_stays_in_range(channels: int) -> None:
    smooth = gaussian_blur(camera_batch(channels), sigma=1.0)
    sharpened = unsharp(smooth, radius=1.0, amount=2.0)
    assert sharpened.shape == smooth.shape
    assert sharpened.dtype == smooth.dtype
    assert sharpened.min() >= 0.0 and sharpened.max() <= 1.0
    assert laplacian_variance(sharpened)[0] > 1.5 * laplacian_variance(smooth)[0]


def test_unsharp_on_colour_filters_each_channel_alone() -> None:
    images = gaussian_blur(camera_batch(3), sigma=1.0).double()
    result = unsharp(images, radius=2.0, amount=1.0)
    for channel in range(3):
        expected = filters.unsharp_mask(
            images[0, channel].numpy(), radius=2.0, amount=1.0, preserve_range=True
        )
        np.testing.assert_allclose(result[0, channel].numpy(), np.clip(expected, 0, 1), atol=1e-12)


def test_unsharp_with_zero_amount_is_identity() -> None:
    images = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(unsharp(images, radius=1.0, amount=0.0), images)


# --- devices, batch sizes ------------------------------------------------------------------


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
def test_batch_of_one_keeps_shapes_and_devices(device: str, channels: int) -> None:
    images = camera_batch(channels).to(device)
    assert to_grey(images).device == images.device
    for values in blur_metrics(images).values():
        assert values.shape == (1,)
    for values in reconstruction_metrics(images, images * 0.9).values():
        assert values.shape == (1,)
    for sharpened in (pil_sharpness(images, 2.0), unsharp(images, 1.0, 1.0)):
        assert sharpened.shape == images.shape
        assert sharpened.device == images.device
        assert sharpened.dtype == images.dtype
    assert isinstance(colour_shift(images, images * 0.5), float)
