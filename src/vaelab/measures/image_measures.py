"""Pure image metrics for the evaluate stage: blur, reconstruction quality, AUROC, colour drift.

Every image batch is a float tensor of shape (B, C, H, W) with values in [0, 1] and C in {1, 3};
it may live on any device. The grey conversion, MSE and colour means run on that device, the
rest on the CPU, on a stack of images at a time: scikit-image's blur_effect, PSNR and SSIM as
its own scipy filters and arithmetic applied to the stack (no Python call per image but the
last sums), torch's kernels for the variances and the spectrum. Each value is the per-image
implementation's to the last bit (tests hold them to scikit-image and conv2d). Per-image results
come back as (B,) float64 (a CPU tensor or a numpy array, as each function says); the keys of the
dicts are the metric names the README lists.

Every per-image value depends on that image alone, not on the batch it came in: the batch is
worked through in pieces of a few images (:data:`PIECE_VALUES`: temporaries of a few hundred KB
whatever the batch size), and a lone image is measured as a pair with itself, because torch
reduces a batch of one with other kernels (its last bits differ). So a test split measured
batch by batch gives the same numbers as measured at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import ndimage
from torch import Tensor

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, Tensor)

# scikit-image's rgb2gray (ITU-R BT.709 luma) weights, so that our grey matches
# skimage.color.rgb2gray.
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

# Nyquist frequency in cycles per pixel, the unit of torch.fft.fftfreq.
NYQUIST = 0.5

# scikit-image's default SSIM window side.
SSIM_DEFAULT_WIN = 7

# Values per image times images per piece of a batch (see the module docstring): a piece's
# float64 arrays (256 KB) stay in the CPU's cache. Measured on 64x64x3 batches, 2^15 and 2^16
# values were the fastest of 2^14 to 2^20 (2^20: 40 % slower).
PIECE_VALUES = 32_767

BLUR_METRICS = ("laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect")

# skimage.measure.blur_effect's defaults: the re-blurring window and the floor on gradients.
BLUR_EFFECT_H_SIZE = 11
_BLUR_EFFECT_EPSILON = np.spacing(np.float64(1))
# skimage.filters.sobel's kernel along an axis: edge weights [1, 0, -1] along it, smoothing
# [1, 2, 1] / 4 across.
_SOBEL_EDGE, _SOBEL_SMOOTH = np.array([1, 0, -1]), np.array([1, 2, 1]) / 4
_SOBEL = {0: np.outer(_SOBEL_EDGE, _SOBEL_SMOOTH), 1: np.outer(_SOBEL_SMOOTH, _SOBEL_EDGE)}
_DBL_EPSILON = np.finfo(np.float64).eps  # ndimage keeps a kernel weight when |w| exceeds it
# SSIM's constants (scikit-image's K1, K2 defaults).
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


class PerImage:
    """Per-image values of a split of ``count`` images, put batch by batch at the images' rows.

    Each name's ``(count, ...)`` array is made once, at its first batch, so that streaming a
    split leaves nothing behind a batch but its rows: the small arrays a list kept from every
    batch, among the batch's large temporaries, kept the heap from being reused, and the
    stage's memory grew by some 28 KB an image.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._arrays: dict[str, np.ndarray] = {}

    def put(self, rows: slice, values: Mapping[str, np.ndarray | Tensor]) -> None:
        """``values[name]`` (one row per image of ``rows``) into the rows of ``name``'s array."""
        for name, value in values.items():
            value = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            if name not in self._arrays:
                self._arrays[name] = np.empty((self.count, *value.shape[1:]), dtype=value.dtype)
            self._arrays[name][rows] = value

    def arrays(self) -> dict[str, np.ndarray]:
        """Each name's array (the arrays themselves, in a new dict)."""
        return dict(self._arrays)


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}"
        )
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"{name} must have 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor with values in [0, 1], "
            f"got dtype {images.dtype}"
        )


def _piece_size(height: int, width: int) -> int:
    """Images per piece of a batch of ``height x width`` values per image (see PIECE_VALUES)."""
    return max(2, PIECE_VALUES // (height * width))


def _pieces(count: int, size: int) -> list[slice]:
    """Slices of at most ``size`` images covering ``range(count)``, none of one image unless
    ``count`` is 1 (a last piece of one joins the piece before it); one empty slice for 0."""
    starts = list(range(0, count, size)) or [0]
    if len(starts) > 1 and count - starts[-1] == 1:
        starts.pop()
    return [slice(start, end) for start, end in zip(starts, [*starts[1:], count], strict=True)]


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch (and MKL under it) on one thread for a while, then as before: a piece's ops are too
    small to share out, and on a busy machine each op that waits for a second thread loses
    milliseconds. Every value is the same on any number of threads (tests hold it)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _to_numpy(images: Tensor) -> np.ndarray:
    """(B, C, H, W) tensor -> float64 (B, C, H, W) numpy on the CPU (the float32 values,
    exactly)."""
    return images.detach().to(device="cpu", dtype=torch.float64).numpy()


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


def laplacian(grey: ArrayOrTensor) -> ArrayOrTensor:
    """(..., H, W) -> (..., H-2, W-2): the 3x3 LAPLACIAN_KERNEL, 'valid' (no padding); numpy or
    torch.

    Its five non-zero taps added as shifted slices, in the kernel's row-major order (up, left,
    -4 x centre, right, down): the order in which conv2d's im2col-and-matrix-product adds them,
    so the result is conv2d's to the last bit where conv2d takes that path (the weights 1 and -4
    make every product exact; only the order of the sums could differ), within one rounding
    where its kernel for a shape and CPU adds in another order (a test holds both), at a
    twentieth of the float64 conv2d's time. Its own order is fixed: the same bits everywhere.
    """
    up, left, centre = grey[..., :-2, 1:-1], grey[..., 1:-1, :-2], grey[..., 1:-1, 1:-1]
    right, down = grey[..., 1:-1, 2:], grey[..., 2:, 1:-1]
    result: ArrayOrTensor = up + left + centre * -4.0 + right + down
    return result


def laplacian_variance(images: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: population variance of the Laplacian.

    The 3x3 Laplacian [[0,1,0],[1,-4,1],[0,1,0]] of the greyscale image, 'valid' convolution (no
    padding, so (H-2) x (W-2) values), as in the WAE paper's blurriness code. Needs H, W >= 3.
    """
    return torch.from_numpy(_blur(images, ("laplacian_var",))["laplacian_var"])


def normalised_laplacian_variance(images: Tensor) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: Laplacian variance over intensity
    variance.

    The Laplacian variance of the greyscale image divided by the variance of its pixels: a
    sharpness that does not rise with plain contrast (scaling an image by ``a`` and shifting
    it by ``b`` leaves it unchanged, since the Laplacian's weights sum to 0). A flat image has
    neither edges nor contrast and gives 0.
    """
    return torch.from_numpy(_blur(images, ("laplacian_var_norm",))["laplacian_var_norm"])


def hf_energy_fraction(images: Tensor, cutoff: float = 0.5) -> Tensor:
    """(B, C, H, W) in [0, 1] -> (B,) float64 CPU tensor: share of FFT power above cutoff * Nyquist.

    Power is |FFT|^2 of the greyscale image with its mean removed (so DC is excluded); frequencies
    are those of torch.fft.fftfreq (cycles/pixel, Nyquist 0.5) and the radius is sqrt(fx^2 + fy^2),
    so the corners of the spectrum reach 0.5 * sqrt(2). A constant image has no power and gives 0.0.
    """
    if cutoff < 0:
        raise ValueError(f"cutoff must be >= 0 (a fraction of the Nyquist frequency), got {cutoff}")
    return torch.from_numpy(_blur(images, ("hf_energy",), cutoff=cutoff)["hf_energy"])


def blur_effect(images: Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B,) float64: skimage.measure.blur_effect of each greyscale image.

    Higher is blurrier, in [0, 1] (a constant image gives 1.0). scikit-image's numbers to the last
    bit, computed on a stack of images at once: see :func:`_blur_effect`.
    """
    return _blur(images, ("blur_effect",))["blur_effect"]


def blur_metrics(images: Tensor) -> dict[str, np.ndarray]:
    """(B, C, H, W) in [0, 1] -> {"laplacian_var", "laplacian_var_norm", "hf_energy",
    "blur_effect"}, each (B,) float64 numpy: the four functions' values, from one grey image and
    one Laplacian."""
    return _blur(images, BLUR_METRICS)


def _blur(images: Tensor, names: tuple[str, ...], *, cutoff: float = 0.5) -> dict[str, np.ndarray]:
    """The blur metrics ``names`` of each image, piece by piece (see the module docstring)."""
    _check_images(images)
    if {"laplacian_var", "laplacian_var_norm"} & set(names) and (
        images.shape[-2] < 3 or images.shape[-1] < 3
    ):
        raise ValueError(
            "laplacian_variance needs images of at least 3x3 pixels, "
            f"got shape {tuple(images.shape)}"
        )
    out = {name: np.empty(len(images), dtype=np.float64) for name in names}
    with _one_thread():
        for piece in _pieces(len(images), _piece_size(*images.shape[2:])):
            part = images[piece]
            alone = len(part) == 1
            measured = _blur_piece(torch.cat([part, part]) if alone else part, names, cutoff)
            for name, values in measured.items():
                out[name][piece] = values[:1] if alone else values
    return out


def _blur_piece(images: Tensor, names: tuple[str, ...], cutoff: float) -> dict[str, np.ndarray]:
    """The blur metrics ``names`` of a few images, each (b,) float64: torch's kernels for the
    variances and the spectrum, as before batching, and for the Sobel taps; numpy and scipy
    for the rest."""
    # float64 because the variance of small second differences loses digits in float32.
    grey = to_grey(images).to(device="cpu", dtype=torch.float64)[:, 0].numpy()  # (b, H, W)
    by_torch: dict[str, Tensor] = {}
    if "laplacian_var" in names or "laplacian_var_norm" in names:
        raw = _row_variance(laplacian(grey))
        by_torch["laplacian_var"] = raw
        if "laplacian_var_norm" in names:
            contrast = _row_variance(grey)
            by_torch["laplacian_var_norm"] = torch.where(
                contrast > 0, raw / contrast.clamp_min(torch.finfo(torch.float64).tiny), 0.0
            )
    if "hf_energy" in names:
        by_torch["hf_energy"] = _hf_energy(torch.from_numpy(grey), cutoff)
    measured = {name: values.numpy() for name, values in by_torch.items()}
    if "blur_effect" in names:
        measured["blur_effect"] = _blur_effect(grey)
    return {name: measured[name] for name in names}


def _row_variance(values: np.ndarray) -> Tensor:
    """(b, ...) float64 -> (b,) tensor: each image's population variance, by torch's per-row
    kernel."""
    return torch.from_numpy(values.reshape(len(values), -1)).var(dim=1, correction=0)


def _hf_energy(grey: Tensor, cutoff: float) -> Tensor:
    """(b, H, W) float64 -> (b,): the high-frequency share of hf_energy_fraction."""
    centred = grey - grey.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred).abs().square()
    high = _high_frequencies(*grey.shape[-2:], cutoff)
    total = power.sum(dim=(-2, -1))
    high_power = (power * high).sum(dim=(-2, -1))
    # A constant image has zero total power: report no high-frequency content rather than 0/0.
    return torch.where(
        total > 0, high_power / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0
    )


@lru_cache(maxsize=16)
def _high_frequencies(height: int, width: int, cutoff: float) -> Tensor:
    """(H, W) bool CPU tensor: where the FFT's frequency radius exceeds cutoff * NYQUIST (read
    only)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)
    return torch.sqrt(fy[:, None].square() + fx[None, :].square()) > cutoff * NYQUIST


def _blur_effect(grey: np.ndarray) -> np.ndarray:
    """(b, H, W) float64 -> (b,): skimage.measure.blur_effect(image) of each image, on the stack.

    scikit-image's steps (h_size 11, reflect borders, the larger of the two axes' values) on
    the whole stack: uniform_filter1d along an image axis filters each image as alone, and
    :func:`_sobel` adds ndimage's products in ndimage's order. The sums over each image's inner
    region run per image, as scikit-image's numpy call on the same view, so that they add in
    its order.
    """
    count, height, width = grey.shape
    inner = (slice(2, height - 1), slice(2, width - 1))
    per_axis = []
    for axis in (0, 1):
        reblurred = ndimage.uniform_filter1d(grey, BLUR_EFFECT_H_SIZE, axis=axis + 1)
        edges = np.maximum(
            _BLUR_EFFECT_EPSILON, np.abs(_sobel(np.concatenate([grey, reblurred]), axis))
        )
        sharp, blurred = edges[:count], edges[count:]
        lost = np.maximum(0, sharp - blurred)
        m1 = np.array([np.sum(image[inner]) for image in sharp])
        m2 = np.array([np.sum(image[inner]) for image in lost])
        per_axis.append(np.abs(m1 - m2) / m1)
    blurriness: np.ndarray = np.maximum(*per_axis)
    return blurriness


def _sobel(images: np.ndarray, axis: int) -> np.ndarray:
    """skimage.filters.sobel(image, axis=axis) of each (H, W) image of a (b, H, W) stack.

    scikit-image convolves with ndimage (reflect borders), which adds the products of the
    flipped kernel's taps (those with |w| > DBL_EPSILON) to 0.0 one by one in row-major
    order; here the same products in the same order, as shifted slices of the stack padded by
    one pixel (edge pixels repeated: ndimage's 'reflect' for a one-pixel border), in torch on
    one thread (a third faster than ndimage's generic 3x3 loop). The weights are +-1/4 and
    +-1/2: each product is exact, whichever sign it is taken with; only the sign of a zero sum
    can differ, and abs drops it.
    """
    height, width = images.shape[1:]
    padded = torch.nn.functional.pad(
        torch.from_numpy(images)[:, None], (1, 1, 1, 1), mode="replicate"
    )[:, 0]
    scaled = {weight: padded * weight for weight in (0.25, 0.5)}
    total: Tensor | None = None
    # A convolution: the kernel flipped.
    for (dy, dx), weight in np.ndenumerate(_SOBEL[axis][::-1, ::-1]):
        if abs(weight) <= _DBL_EPSILON:
            continue
        tap = scaled[abs(weight)][:, dy : dy + height, dx : dx + width]
        if total is None:
            total = -tap if weight < 0 else tap.clone()
        elif weight < 0:
            total -= tap
        else:
            total += tap
    assert total is not None  # the kernel has non-zero taps
    return total.numpy()


def _ssim_window(height: int, width: int) -> int:
    """SSIM's window side: SSIM_DEFAULT_WIN, else the largest odd side that fits."""
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
    data_range=1.0, per image (batched, to their last bit: :func:`_psnr`, :func:`_ssim`). Identical
    images give psnr = inf, returned as is. SSIM uses a 7 px window, shrunk to the largest odd
    size that fits in images smaller than 7 px.
    """
    _check_images(inputs, "inputs")
    _check_images(recons, "recons")
    if inputs.shape != recons.shape:
        raise ValueError(
            "inputs and recons must have the same shape, "
            f"got {tuple(inputs.shape)} and {tuple(recons.shape)}"
        )
    channels, height, width = inputs.shape[1:]
    win_size = _ssim_window(height, width)
    out = {name: np.empty(inputs.shape[0], dtype=np.float64) for name in ("mse", "psnr", "ssim")}
    with _one_thread():
        for piece in _pieces(inputs.shape[0], _piece_size(height, width * channels)):
            original, recon = inputs[piece], recons[piece].to(inputs.device)
            difference = original.to(torch.float64) - recon.to(torch.float64)
            out["mse"][piece] = difference.square().mean(dim=(1, 2, 3)).cpu().numpy()
            original_np, recon_np = _to_numpy(original), _to_numpy(recon)
            out["psnr"][piece] = _psnr(original_np, recon_np)
            out["ssim"][piece] = _ssim(original_np, recon_np, win_size)
    return out


def _psnr(original: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """(B, C, H, W) float64 pairs -> (B,): skimage.metrics.peak_signal_noise_ratio(data_range=1.0)
    of each pair. The squared errors for the whole stack; each image's mean is scikit-image's
    call on the same memory (its (H, W, C) view of a CHW image reduces in memory order)."""
    squared = (original - recon) ** 2
    mse = np.array([np.mean(image, dtype=np.float64) for image in squared])
    # A perfect reconstruction has mse 0 and psnr inf by definition; numpy's warning is noise.
    with np.errstate(divide="ignore"):
        return 10 * np.log10(1.0 / mse)


def _ssim(original: np.ndarray, recon: np.ndarray, win_size: int) -> np.ndarray:
    """(B, C, H, W) float64 pairs -> (B,): skimage.metrics.structural_similarity(data_range=1.0,
    win_size=win_size, channel_axis for C == 3) of each pair, batched.

    scikit-image's arithmetic on the (B * C, H, W) stack of channels: its uniform_filter with a
    window of 1 along the stack axis filters each channel exactly as alone, and the rest is
    elementwise. Each channel's mean over the inner region, and each image's mean over its
    channels, is the same numpy call as scikit-image's on the same view.
    """
    batch, channels, height, width = original.shape
    x, y = original.reshape(-1, height, width), recon.reshape(-1, height, width)
    # The five filtered planes in one call on one stack (each line is filtered alone, so the
    # same bits as five calls), and only the inner region onwards: what the mean below reads.
    pad = (win_size - 1) // 2
    inner = (slice(None), slice(pad, height - pad), slice(pad, width - pad))
    stack = np.stack([x, y, x * x, y * y, x * y])
    filtered = ndimage.uniform_filter(stack, size=(1, 1, win_size, win_size))
    ux, uy, uxx, uyy, uxy = (plane[inner] for plane in filtered)
    points = win_size**2
    cov_norm = points / (points - 1)  # sample covariance, scikit-image's default
    ux2, uy2 = ux * ux, uy * uy  # scikit-image's ux**2 and uy**2 too: numpy squares as x * x
    vx, vy, vxy = cov_norm * (uxx - ux2), cov_norm * (uyy - uy2), cov_norm * (uxy - ux * uy)
    c1, c2 = (_SSIM_K1 * 1.0) ** 2, (_SSIM_K2 * 1.0) ** 2  # data_range 1
    a1, a2, b1, b2 = 2 * ux * uy + c1, 2 * vxy + c2, ux2 + uy2 + c1, vx + vy + c2
    similarity = (a1 * a2) / (b1 * b2)
    per_channel = np.array([plane.mean(dtype=np.float64) for plane in similarity])
    if channels == 1:
        return per_channel
    return np.array([image.mean() for image in per_channel.reshape(batch, channels)])


def auroc(inlier_scores: ArrayLike, outlier_scores: ArrayLike) -> float:
    """Area under the ROC curve for telling outliers (label 1) from inliers (label 0).

    Scores are any 1-D array-likes (flattened); a higher score means more anomalous. 1.0 = every
    outlier scores above every inlier, 0.5 = chance, 0.0 = perfectly reversed.

    The Mann-Whitney form: the chance that an outlier scores above an inlier, a tie counting
    one half, from the outliers' ranks among all scores (tied scores share their average rank):
    ``(rank sum of the outliers - n1 (n1 + 1) / 2) / (n0 n1)``. The same value as
    scikit-learn's ``roc_auc_score`` (the trapezoids under the ROC curve), without its second
    of import for one number per evaluation.
    """
    inliers = np.asarray(inlier_scores, dtype=np.float64).ravel()
    outliers = np.asarray(outlier_scores, dtype=np.float64).ravel()
    if inliers.size == 0 or outliers.size == 0:
        raise ValueError(
            "auroc needs at least one inlier and one outlier score, "
            f"got {inliers.size} inliers and {outliers.size} outliers"
        )
    scores = np.concatenate([inliers, outliers])
    if not np.isfinite(scores).all():
        raise ValueError("auroc needs finite scores, got NaN or infinity")
    # Average ranks (1-based): a group of t equal scores after s smaller ones ranks s + (t + 1) / 2.
    _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    ranks = below + (counts + 1) / 2.0
    outlier_rank_sum = float(ranks[group[inliers.size :]].sum())
    n0, n1 = inliers.size, outliers.size
    return (outlier_rank_sum - n1 * (n1 + 1) / 2.0) / (n0 * n1)


def colour_shift(reference: Tensor, images: Tensor) -> float:
    """Mean over images of ||mean colour(reference[i]) - mean colour(images[i])||_2.

    reference and images: (B, C, H, W) with the same B and C (H, W may differ); the mean colour is
    the per-channel mean over H, W. It measures how far a pass moved the colours, e.g. the drift of
    a background colour.
    """
    distances = colour_distances(reference, images)
    if distances.numel() == 0:
        raise ValueError("colour_shift needs at least one image, got an empty batch")
    return float(distances.mean().item())


def colour_distances(reference: Tensor, images: Tensor) -> Tensor:
    """(B,) float64 on reference's device: ||mean colour(reference[i]) - mean
    colour(images[i])||_2, whose mean is :func:`colour_shift` (a split's, batch by batch: each
    value is its image's alone)."""
    _check_images(reference, "reference")
    _check_images(images, "images")
    if reference.shape[:2] != images.shape[:2]:
        raise ValueError(
            "reference and images must have the same batch size and channels, "
            f"got {tuple(reference.shape)} and {tuple(images.shape)}"
        )
    reference_colours = reference.to(torch.float64).mean(dim=(-2, -1))
    image_colours = images.to(device=reference.device, dtype=torch.float64).mean(dim=(-2, -1))
    distances: Tensor = torch.linalg.vector_norm(reference_colours - image_colours, dim=1)
    return distances
