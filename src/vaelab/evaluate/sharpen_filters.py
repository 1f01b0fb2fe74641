"""Post-hoc sharpening passes applied to decoded images, to test whether blur is cosmetic.

Each pass maps a float tensor (B, C, H, W) in [0, 1], C in {1, 3}, on any device, to a tensor of
the same shape, device and dtype, still in [0, 1]. The libraries run on the CPU, one image at a
time.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance
from skimage.filters import unsharp_mask
from torch import Tensor

from vaelab.measures.image_measures import _check_images

_PIL_MODES = {1: "L", 3: "RGB"}


def _images_to_uint8(images: Tensor) -> np.ndarray:
    """(B, C, H, W) float in [0, 1] -> uint8 (B, H, W) or (B, H, W, C), rounded to nearest."""
    # Clamp first: a value a hair outside [0, 1] would otherwise wrap around in uint8. One
    # conversion for the batch: torch ops per image cost milliseconds each on a busy machine.
    scaled = (images.detach().to(device="cpu", dtype=torch.float64).clamp(0.0, 1.0) * 255.0).round()
    array = scaled.to(torch.uint8).numpy()
    return array[:, 0] if array.shape[1] == 1 else np.moveaxis(array, 1, -1)


def _from_numpy(arrays: list[np.ndarray], like: Tensor) -> Tensor:
    """Per-image (H, W) or (H, W, C) arrays -> a (B, C, H, W) tensor on like's device and dtype."""
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if stacked.ndim == 3 else np.moveaxis(stacked, -1, 1)
    return torch.from_numpy(np.ascontiguousarray(stacked)).to(device=like.device, dtype=like.dtype)


def pil_sharpness(images: Tensor, factor: float) -> Tensor:
    """PIL ImageEnhance.Sharpness(image).enhance(factor) on each image of (B, C, H, W) in [0, 1].

    Images go through uint8 (rounded; C=1 as mode 'L', C=3 as 'RGB') and come back as floats in
    [0, 1] with the input's shape, device and dtype. factor 1 leaves the uint8 image unchanged,
    0 gives PIL's smoothed image, and > 1 extrapolates away from it (sharper).
    """
    _check_images(images)
    if images.shape[0] == 0:
        return images.clone()
    mode = _PIL_MODES[images.shape[1]]
    sharpened = []
    for image in _images_to_uint8(images):
        pil_image = Image.fromarray(image, mode=mode)
        enhanced = ImageEnhance.Sharpness(pil_image).enhance(factor)
        sharpened.append(np.asarray(enhanced, dtype=np.float64) / 255.0)
    return _from_numpy(sharpened, images)


def unsharp(images: Tensor, radius: float, amount: float) -> Tensor:
    """skimage.filters.unsharp_mask(radius, amount) on each image of (B, C, H, W) in [0, 1].

    Colour images are filtered with channel_axis (so channels are not blurred into each other);
    preserve_range keeps the [0, 1] scale, and the result is clipped to [0, 1] because the mask
    overshoots at edges. Returns the input's shape, device and dtype.
    """
    _check_images(images)
    if images.shape[0] == 0:
        return images.clone()
    # Channels last is axis 2, spelled positively: unsharp_mask slices channels with a helper that
    # reads -1 as axis 0 and returns uninitialised memory (scikit-image issue #7264, still in 0.26).
    channel_axis = 2 if images.shape[1] == 3 else None
    sharpened = []
    for array in images.detach().to(device="cpu", dtype=torch.float64).numpy():
        array = array[0] if channel_axis is None else np.moveaxis(array, 0, channel_axis)
        # scikit-image ships no type annotations.
        filtered = unsharp_mask(  # type: ignore[no-untyped-call]
            array, radius=radius, amount=amount, channel_axis=channel_axis, preserve_range=True
        )
        sharpened.append(np.clip(filtered, 0.0, 1.0))
    return _from_numpy(sharpened, images)
