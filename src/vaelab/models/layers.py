"""Building blocks with Keras-like 'same' geometry for any image size.

Keras' ``padding="same"`` makes a stride-``s`` conv return ``ceil(n / s)`` pixels and
puts the odd padding pixel at the bottom/right. A decoder has to undo that exactly, so
encoders record their spatial sizes and the decoder layers here are built with the
size they must produce: ``2n`` or ``2n - 1`` are both valid inverses of ``ceil(· / 2)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv or pool of this stride: ``ceil(size / stride)``."""
    return math.ceil(size / stride)


def same_sizes(size: int, strides: list[int]) -> list[int]:
    """Sizes through a chain of 'same' layers, input size first: ``[size, after 1st, ...]``."""
    sizes = [size]
    for stride in strides:
        sizes.append(same_size(sizes[-1], stride))
    return sizes


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding that gives ``ceil(size / stride)`` outputs, Keras style."""
    out = same_size(size, stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras 'same' padding: ``(B, C, H, W) -> (B, out, ceil(H/s), ceil(W/s))``.

    PyTorch's symmetric ``padding=k // 2`` gives the same sizes but shifts the sampling
    grid by half a pixel on even inputs; padding the extra pixel at the bottom/right
    keeps the geometry (and hence trained weights) comparable with the Keras seeds.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        (kernel_h, kernel_w), (stride_h, stride_w) = self.kernel_size, self.stride
        top, bottom = _same_padding(x.shape[-2], kernel_h, stride_h)
        left, right = _same_padding(x.shape[-1], kernel_w, stride_w)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def transposed_conv_to(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, in_size: int, out_size: int
) -> nn.ConvTranspose2d:
    """A transposed conv that maps ``(B, in, in_size, in_size)`` to exactly
    ``(B, out, out_size, out_size)``.

    With odd ``kernel_size`` and ``padding = (k - 1) / 2`` the natural output is
    ``(n - 1) * s + 1``; ``output_padding`` (0 .. s-1) adds the rest, so every size
    ``t`` with ``ceil(t / s) == n`` is reachable. Fixing it here rather than passing
    ``output_size`` at call time keeps the layer usable inside ``nn.Sequential``.
    """
    if kernel_size % 2 == 0:
        raise ValueError(
            f"transposed convs need an odd kernel to hit every size, got {kernel_size}"
        )
    padding = (kernel_size - 1) // 2
    natural = (in_size - 1) * stride - 2 * padding + kernel_size
    output_padding = out_size - natural
    if not 0 <= output_padding < stride:
        raise ValueError(
            f"a stride-{stride} transposed conv cannot map {in_size} pixels to {out_size} "
            f"(needs ceil({out_size} / {stride}) == {in_size})"
        )
    return nn.ConvTranspose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
    )


class UpsampleTo(nn.Module):
    """Nearest-neighbour ×``scale`` upsampling cropped to ``size``:
    ``(B, C, n, n) -> (B, C, size, size)``.

    The inverse of a ceil-mode pool or 'same' stride-2 conv: those padded the odd pixel
    at the bottom/right, so the surplus row and column are dropped from there.
    """

    def __init__(self, size: int, scale: int = 2) -> None:
        super().__init__()
        self.size = size
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] * self.scale < self.size or x.shape[-2] * self.scale < self.size:
            raise ValueError(f"cannot upsample {tuple(x.shape[-2:])} ×{self.scale} to {self.size}")
        x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return x[..., : self.size, : self.size]

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}"


def resize_conv_to(
    in_channels: int, out_channels: int, kernel_size: int, in_size: int, out_size: int
) -> nn.Sequential:
    """Upsample ×2 to ``out_size`` then a stride-1 'same' conv (no checkerboard artefacts).

    Same parameter count as the stride-2 transposed conv it replaces.
    """
    if same_size(out_size, 2) != in_size:
        raise ValueError(f"×2 upsampling cannot map {in_size} pixels to {out_size}")
    return nn.Sequential(UpsampleTo(out_size), SameConv2d(in_channels, out_channels, kernel_size))


class ResidualBlock(nn.Module):
    """A pre-activation residual block at one resolution: ``(B, C, n, n) -> (B, C, n, n)``.

    ``x + conv(relu(conv(relu(x))))`` (He et al. 2016, "Identity mappings in deep residual
    networks"), both convs stride-1 'same' with ``maps`` filters and ``kernel``; with
    ``batch_norm`` a BatchNorm2d before each ReLU. The skip path is the identity, so the
    block adds to what the strided layer before it made and works on maps of either sign.
    """

    def __init__(self, maps: int, kernel: int, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            if batch_norm:
                layers.append(nn.BatchNorm2d(maps))
            layers += [nn.ReLU(), SameConv2d(maps, maps, kernel)]
        self.residual = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        residual: Tensor = self.residual(x)
        return x + residual


def residual_blocks(
    trunk: str, maps: int, kernel: int, batch_norm: bool = False
) -> list[nn.Module]:
    """The layers a ``trunk`` adds after a strided layer with ``maps`` outputs: one
    :class:`ResidualBlock` for ``resnet``, nothing for ``plain`` (so a plain trunk is built,
    and initialised, exactly as before the knob existed)."""
    if trunk == "plain":
        return []
    if trunk == "resnet":
        return [ResidualBlock(maps, kernel, batch_norm)]
    raise ValueError(f"unknown trunk {trunk!r}; use 'plain' or 'resnet'")


def gaussian_sample(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Reparameterisation trick: ``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``,
    shape of ``mu``.

    Written this way the sample is a differentiable function of ``mu`` and ``logvar``.
    ``generator`` makes the draw reproducible; it may live on the CPU while ``mu`` is on an
    accelerator.
    """
    # A generator can only draw on its own device, so draw there and move the noise.
    noise_device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, device=noise_device, dtype=mu.dtype).to(
        mu.device
    )
    return mu + torch.exp(0.5 * logvar) * eps
