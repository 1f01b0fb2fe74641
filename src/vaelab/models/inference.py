"""Batched inference of a trained model over prepared uint8 arrays.

Images travel as ``(N, H, W, C)`` uint8 numpy arrays (the prepared format) and become
``(B, C, H, W)`` float tensors in [0, 1] on the model's device one batch at a time, so
a whole CelebA test split never has to sit in device memory as floats.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from vaelab.models import Autoencoder


def to_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """``(N, H, W, C)`` uint8 → ``(N, C, H, W)`` float32 in [0, 1] on ``device``."""
    return (
        torch.from_numpy(np.ascontiguousarray(images))
        .to(device)
        .permute(0, 3, 1, 2)
        .float()
        .div_(255.0)
    )


def to_numpy(images: Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [0, 1] → ``(N, H, W, C)`` float32 numpy on the CPU (for figures)."""
    return images.detach().float().clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()


def batches(images: np.ndarray, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    """The images in order, as float batches on ``device``."""
    for first in range(0, len(images), batch_size):
        yield to_tensor(images[first : first + batch_size], device)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's (first) parameters."""
    return next(model.parameters()).device


@torch.no_grad()
def encode_all(model: Autoencoder, images: np.ndarray, batch_size: int) -> dict[str, Tensor]:
    """Encode every image: ``{"z": (N, *latent_shape)}`` plus ``mu``/``logvar`` ``(N, z_dim)``
    for VAEs."""
    parts: dict[str, list[Tensor]] = {}
    for x in batches(images, batch_size, model_device(model)):
        for name, value in model.encode(x).items():
            parts.setdefault(name, []).append(value.float())
    return {name: torch.cat(values) for name, values in parts.items()}


@torch.no_grad()
def decode_all(model: Autoencoder, z: Tensor, batch_size: int) -> Tensor:
    """Decode ``(N, *latent_shape)`` codes → ``(N, C, H, W)`` images in [0, 1] on the model's
    device."""
    device = model_device(model)
    return torch.cat(
        [model.decode(z[i : i + batch_size].to(device)) for i in range(0, len(z), batch_size)]
    )


@torch.no_grad()
def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int) -> Tensor:
    """``(N, H, W, C)`` uint8 → ``(N, C, H, W)`` reconstructions on the model's device (eval
    mode: z = mean)."""
    return torch.cat([model(x)["recon"] for x in batches(images, batch_size, model_device(model))])


def prior_draws(shape: tuple[int, ...], n: int, seed: int, *, low: float | None = None) -> Tensor:
    """``n`` reproducible latents on the CPU: N(0, I), or U[-low, low] when ``low`` is given."""
    generator = torch.Generator().manual_seed(seed)
    if low is None:
        return torch.randn((n, *shape), generator=generator)
    return (torch.rand((n, *shape), generator=generator) * 2.0 - 1.0) * low
