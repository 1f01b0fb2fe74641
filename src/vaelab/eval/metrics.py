"""Pure image metrics for the evaluate stage: blur, reconstruction quality, AUROC, colour drift.

Every image batch is a float tensor of shape (B, C, H, W) with values in [0, 1] and C in {1, 3};
it may live on any device. Torch-native metrics run on that device; the scikit-image ones move
images to the CPU one at a time. Per-image results come back as (B,) float64 (a CPU tensor or a
numpy array, as each function says); the keys of the dicts are the metric names the README lists.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from skimage.measure import blur_effect as _skimage_blur_effect
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

# scikit-image's rgb2gray (ITU-R BT.709 luma) weights, so that our grey matches skimage.color.rgb2gray.
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

# Nyquist frequency in cycles per pixel, the unit of torch.fft.fftfreq.
NYQUIST = 0.5

# scikit-image's default SSIM window side.
SSIM_DEFAULT_WIN = 7


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {images.dtype}")


def _to_numpy_hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) tensor -> float64 numpy (H, W) for C == 1 or (H, W, C) for C == 3."""
    array = image.detach().to(device="cpu", dtype=torch.float64).numpy()
    if array.shape[0] == 1:
        return array[0]
    return np.moveaxis(array, 0, -1)


def to_grey(images: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1], C in {1, 3} -> (B, 1, H, W), same device and dtype.

    C == 1 is returned as is (the same tensor); C == 3 is weighted with scikit-image's rgb2gray
    weights (0.2125, 0.7154, 0.0721).
    """
    _check_images(images)
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(GREY_WEIGHTS, device=images.device, dtype=images.dtype)
    return torch.einsum("bchw,c->bhw", images, weights).unsqueeze(1)


def laplacian_variance(images: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: population variance of the Laplacian.

    The 3x3 Laplacian [[0,1,0],[1,-4,1],[0,1,0]] of the greyscale image, 'valid' convolution (no
    padding, so (H-2) x (W-2) values), as in the WAE paper's blurriness code. Needs H, W >= 3.
    """
    _check_images(images)
    if images.shape[-2] < 3 or images.shape[-1] < 3:
        raise ValueError(f"laplacian_variance needs images of at least 3x3 pixels, got shape {tuple(images.shape)}")
    # float64 because the variance of small second differences loses digits in float32.
    grey = to_grey(images).to(torch.float64)
    kernel = torch.tensor(LAPLACIAN_KERNEL, device=grey.device, dtype=grey.dtype).view(1, 1, 3, 3)
    laplacian = torch.nn.functional.conv2d(grey, kernel)
    return laplacian.flatten(1).var(dim=1, correction=0).cpu()


def normalised_laplacian_variance(images: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: Laplacian variance over intensity variance.

    The Laplacian variance of the greyscale image divided by the variance of its pixels: a
    sharpness that does not rise with plain contrast (scaling an image by ``a`` and shifting
    it by ``b`` leaves it unchanged, since the Laplacian's weights sum to 0). A flat image has
    neither edges nor contrast and gives 0.
    """
    grey = to_grey(images).to(torch.float64)
    contrast = grey.flatten(1).var(dim=1, correction=0).cpu()
    return torch.where(contrast > 0, laplacian_variance(images) / contrast.clamp_min(torch.finfo(torch.float64).tiny),
                       0.0)


def hf_energy_fraction(images: Tensor, cutoff: float = 0.5) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: share of FFT power above cutoff * Nyquist.

    Power is |FFT|^2 of the greyscale image with its mean removed (so DC is excluded); frequencies
    are those of torch.fft.fftfreq (cycles/pixel, Nyquist 0.5) and the radius is sqrt(fx^2 + fy^2),
    so the corners of the spectrum reach 0.5 * sqrt(2). A constant image has no power and gives 0.0.
    """
    _check_images(images)
    if cutoff < 0:
        raise ValueError(f"cutoff must be >= 0 (a fraction of the Nyquist frequency), got {cutoff}")
    grey = to_grey(images).to(torch.float64)[:, 0]
    centred = grey - grey.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().square()
    height, width = grey.shape[-2:]
    fy = torch.fft.fftfreq(height, device=grey.device, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, device=grey.device, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None].square() + fx[None, :].square())
    high = radius > cutoff * NYQUIST
    total = power.sum(dim=(-2, -1))
    high_power = (power * high).sum(dim=(-2, -1))
    # A constant image has zero total power: report no high-frequency content rather than 0/0.
    fraction = torch.where(total > 0, high_power / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return fraction.cpu()


def blur_effect(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B,) float64: skimage.measure.blur_effect of each greyscale image.

    Higher is blurrier, in [0, 1] (a constant image gives 1.0). A Python loop: scikit-image has no
    batched form.
    """
    grey = to_grey(images)
    return np.array([_skimage_blur_effect(_to_numpy_hwc(image)) for image in grey], dtype=np.float64)


def blur_metrics(images: Tensor) -> dict[str, np.ndarray]:
    """(B, C, H, W) in [0, 1] -> {"laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect"},
    each (B,) float64 numpy."""
    return {
        "laplacian_var": laplacian_variance(images).numpy(),
        "laplacian_var_norm": normalised_laplacian_variance(images).numpy(),
        "hf_energy": hf_energy_fraction(images).numpy(),
        "blur_effect": blur_effect(images),
    }


def _ssim_window(height: int, width: int) -> int:
    side = min(height, width)
    if side >= SSIM_DEFAULT_WIN:
        return SSIM_DEFAULT_WIN
    # SSIM's sample covariance divides by win_size**2 - 1, so a 1-pixel window cannot work.
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return side if side % 2 == 1 else side - 1


def reconstruction_metrics(inputs: Tensor, recons: Tensor) -> dict[str, np.ndarray]:
    """Per-image {"mse", "psnr", "ssim"} of recons against inputs, each (B,) float64 numpy.

    inputs and recons: (B, C, H, W) in [0, 1], the same shape. mse is the mean over C, H, W
    (computed in torch on the inputs' device); psnr and ssim are scikit-image's with
    data_range=1.0, per image. Identical images give psnr = inf, returned as is. SSIM uses a 7 px
    window, shrunk to the largest odd size that fits in images smaller than 7 px.
    """
    _check_images(inputs, "inputs")
    _check_images(recons, "recons")
    if inputs.shape != recons.shape:
        raise ValueError(f"inputs and recons must have the same shape, got {tuple(inputs.shape)} and {tuple(recons.shape)}")
    difference = inputs.to(torch.float64) - recons.to(device=inputs.device, dtype=torch.float64)
    mse = difference.square().mean(dim=(1, 2, 3)).cpu().numpy()

    channels, height, width = inputs.shape[1:]
    win_size = _ssim_window(height, width)
    channel_axis = -1 if channels == 3 else None
    psnr = np.empty(inputs.shape[0], dtype=np.float64)
    ssim = np.empty(inputs.shape[0], dtype=np.float64)
    for index, (original, recon) in enumerate(zip(inputs, recons, strict=True)):
        original_np, recon_np = _to_numpy_hwc(original), _to_numpy_hwc(recon)
        # A perfect reconstruction has mse 0 and psnr inf by definition; numpy's warning is noise.
        with np.errstate(divide="ignore"):
            psnr[index] = peak_signal_noise_ratio(original_np, recon_np, data_range=1.0)
        ssim[index] = structural_similarity(
            original_np, recon_np, data_range=1.0, channel_axis=channel_axis, win_size=win_size
        )
    return {"mse": mse, "psnr": psnr, "ssim": ssim}


def auroc(inlier_scores: ArrayLike, outlier_scores: ArrayLike) -> float:
    """Area under the ROC curve for telling outliers (label 1) from inliers (label 0).

    Scores are any 1-D array-likes (flattened); a higher score means more anomalous. 1.0 = every
    outlier scores above every inlier, 0.5 = chance, 0.0 = perfectly reversed.
    """
    # Imported here: scikit-learn pulls in scipy.stats, a second of start-up for every stage.
    from sklearn.metrics import roc_auc_score

    inliers = np.asarray(inlier_scores, dtype=np.float64).ravel()
    outliers = np.asarray(outlier_scores, dtype=np.float64).ravel()
    if inliers.size == 0 or outliers.size == 0:
        raise ValueError(
            f"auroc needs at least one inlier and one outlier score, got {inliers.size} inliers and {outliers.size} outliers"
        )
    labels = np.concatenate([np.zeros(inliers.size), np.ones(outliers.size)])
    scores = np.concatenate([inliers, outliers])
    return float(roc_auc_score(labels, scores))


def colour_shift(reference: Tensor, images: Tensor) -> float:
    """Mean over images of ||mean colour(reference[i]) - mean colour(images[i])||_2.

    reference and images: (B, C, H, W) with the same B and C (H, W may differ); the mean colour is
    the per-channel mean over H, W. It measures how far a pass moved the colours, e.g. the drift of
    a background colour.
    """
    _check_images(reference, "reference")
    _check_images(images, "images")
    if reference.shape[:2] != images.shape[:2]:
        raise ValueError(
            f"reference and images must have the same batch size and channels, got {tuple(reference.shape)} and {tuple(images.shape)}"
        )
    if reference.shape[0] == 0:
        raise ValueError("colour_shift needs at least one image, got an empty batch")
    reference_colours = reference.to(torch.float64).mean(dim=(-2, -1))
    image_colours = images.to(device=reference.device, dtype=torch.float64).mean(dim=(-2, -1))
    return float(torch.linalg.vector_norm(reference_colours - image_colours, dim=1).mean().item())
