"""Plain (deterministic) convolutional autoencoders from studies 000 and 001.

The studies' Keras tables fix layer types, filters, strides and parameter counts but not
activations; we use ReLU after every hidden conv (Keras tutorials' default) and a
sigmoid on the output, applied in :meth:`Autoencoder.decode` so the loss can use logits.
All convs are 3×3. Sizes in the comments are for a 128×128 input; any size works.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from torch import Tensor, nn

from vaelab.config.model_config import AccordionConfig, AeConvConfig, AePoolConfig, Trunk
from vaelab.models.interface import Autoencoder
from vaelab.models.layers import (
    SameConv2d,
    UpsampleTo,
    residual_blocks,
    same_size,
    transposed_conv_to,
)
from vaelab.models.losses import LossSettings
from vaelab.models.zoo import loss_settings_from, register


class PoolingAutoencoder(Autoencoder):
    """Study 000 "Version 1": ``(B, C, n, n) -> z (B, 32, ~n/16, ~n/16) -> (B, C, n, n)``.

    Encoder: conv 64 /2 → maxpool /2 → conv 32 /2 → maxpool /2 (128 → 64 → 32 → 16 → 8).
    Decoder: convT 32 ×2 → upsample ×2 → convT 64 ×2 → upsample ×2 → conv C 3×3
    (8 → 16 → 32 → 64 → 128). 49,731 parameters at 128×128×3.
    """

    def __init__(self, *, image_size: int, channels: int, loss_settings: LossSettings) -> None:
        # Pools use ceil mode, matching 'same' padding, so no border row is dropped on odd
        # sizes; the decoder then crops its ×2 upsampling back to the recorded size.
        conv1, pool1 = same_size(image_size, 2), same_size(same_size(image_size, 2), 2)
        conv2, pool2 = same_size(pool1, 2), same_size(same_size(pool1, 2), 2)
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=(32, pool2, pool2),
            loss_settings=loss_settings,
        )
        self.encoder = nn.Sequential(
            SameConv2d(channels, 64, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            SameConv2d(64, 32, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        self.decoder = nn.Sequential(
            transposed_conv_to(32, 32, 3, 2, in_size=pool2, out_size=conv2),
            nn.ReLU(),
            UpsampleTo(pool1),
            transposed_conv_to(32, 64, 3, 2, in_size=pool1, out_size=conv1),
            nn.ReLU(),
            UpsampleTo(image_size),
            SameConv2d(64, channels, 3),
        )

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": self.encoder(x)}

    def decode_logits(self, z: Tensor) -> Tensor:
        logits: Tensor = self.decoder(z)
        return logits


class SpatialCodeConvAE(Autoencoder):
    """Study 000 "Version 2": ``(B, C, n, n) -> z (B, 256, ~n/8, ~n/8) -> (B, C, n, n)``.

    Encoder: conv 128 /2 → conv 128 /2 → conv 256 /2 → batch norm (128 → 64 → 32 → 16).
    Decoder: convT 128 ×2 → convT 64 ×2 → convT C ×2 (16 → 32 → 64 → 128).
    817,411 trainable parameters at 128×128×3 (+512 batch-norm running statistics).
    ``trunk="resnet"`` adds a residual block after each encoder conv (before the batch
    norm), one on the code and one after each hidden transposed conv.
    """

    def __init__(
        self, *, image_size: int, channels: int, loss_settings: LossSettings, trunk: Trunk = "plain"
    ) -> None:
        size1 = same_size(image_size, 2)
        size2 = same_size(size1, 2)
        size3 = same_size(size2, 2)
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=(256, size3, size3),
            loss_settings=loss_settings,
        )
        self.encoder = nn.Sequential(
            SameConv2d(channels, 128, 3, stride=2),
            nn.ReLU(),
            *residual_blocks(trunk, 128, 3),
            SameConv2d(128, 128, 3, stride=2),
            nn.ReLU(),
            *residual_blocks(trunk, 128, 3),
            SameConv2d(128, 256, 3, stride=2),
            nn.ReLU(),
            *residual_blocks(trunk, 256, 3),
            nn.BatchNorm2d(256),
        )
        self.decoder = nn.Sequential(
            *residual_blocks(trunk, 256, 3),
            transposed_conv_to(256, 128, 3, 2, in_size=size3, out_size=size2),
            nn.ReLU(),
            *residual_blocks(trunk, 128, 3),
            transposed_conv_to(128, 64, 3, 2, in_size=size2, out_size=size1),
            nn.ReLU(),
            *residual_blocks(trunk, 64, 3),
            transposed_conv_to(64, channels, 3, 2, in_size=size1, out_size=image_size),
        )

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": self.encoder(x)}

    def decode_logits(self, z: Tensor) -> Tensor:
        logits: Tensor = self.decoder(z)
        return logits


class AccordionAutoencoder(Autoencoder):
    """Study 001: ``folds`` ConvAutoencoders in sequence, ``(B, C, n, n) -> (B, C, n, n)``.

    Every fold but the last maps images to images (through its sigmoid), so the middle
    of the accordion is an image-shaped tensor in [0, 1], as in the seed's chained
    Keras model. ``z`` is the last fold's bottleneck: ``encode`` runs the earlier folds
    whole, ``decode`` only the last fold's decoder. Trained end to end on the final output,
    so a learned decoder σ is the accordion's own parameter, not one per fold.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        folds: int,
        loss_settings: LossSettings,
        trunk: Trunk = "plain",
    ) -> None:
        if folds < 1:
            raise ValueError(f"an accordion needs at least one fold, got {folds}")
        # A fold's own loss is never computed (one that were would take the batch's optimal σ).
        fold_settings = loss_settings
        if loss_settings.recon_loss == "gaussian" and loss_settings.sigma == "learned":
            fold_settings = replace(loss_settings, sigma="optimal")
        fold_list = [
            SpatialCodeConvAE(
                image_size=image_size, channels=channels, loss_settings=fold_settings, trunk=trunk
            )
            for _ in range(folds)
        ]
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=fold_list[-1].latent_shape,
            loss_settings=loss_settings,
        )
        self.folds = nn.ModuleList(fold_list)

    @property
    def last_fold(self) -> SpatialCodeConvAE:
        """The fold whose bottleneck is the accordion's code."""
        # A ModuleList's items are typed as plain Modules; every fold is a SpatialCodeConvAE.
        return cast(SpatialCodeConvAE, self.folds[-1])

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        for fold in self.folds[:-1]:
            x = fold(x)["recon"]
        return self.last_fold.encode(x)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.last_fold.decode_logits(z)


@register("ae_pool")
def build_ae_pool(config: AePoolConfig, *, image_size: int, channels: int) -> PoolingAutoencoder:
    return PoolingAutoencoder(
        image_size=image_size, channels=channels, loss_settings=loss_settings_from(config)
    )


@register("ae_conv")
def build_ae_conv(config: AeConvConfig, *, image_size: int, channels: int) -> SpatialCodeConvAE:
    return SpatialCodeConvAE(
        image_size=image_size,
        channels=channels,
        loss_settings=loss_settings_from(config),
        trunk=config.trunk,
    )


@register("accordion")
def build_accordion(
    config: AccordionConfig, *, image_size: int, channels: int
) -> AccordionAutoencoder:
    return AccordionAutoencoder(
        image_size=image_size,
        channels=channels,
        folds=config.folds,
        loss_settings=loss_settings_from(config),
        trunk=config.trunk,
    )
