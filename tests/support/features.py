"""A small network in Inception-v3's place, for the tests of FID and KID's plumbing."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SmallFeatures(nn.Module):
    """uint8 ``(B, 3, H, W)`` → ``(B, 6)`` features: one seeded 3x3 conv, tanh, mean over the image.

    Plumbing only: it shows what reaches the feature extractor (``inputs``, every call's
    tensor) and that the numbers are FID and KID of its features. They are not Inception's
    numbers, and say nothing about image quality.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.detach().cpu().clone())
        return self.conv(x.float() / 255.0).tanh().mean(dim=(2, 3))
