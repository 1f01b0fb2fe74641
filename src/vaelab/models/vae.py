"""Variational autoencoders from studies 001-004: convolutional, MLP and the small 8-d one.

All use ReLU between hidden layers (the seeds show no activations; ReLU is the usual
Keras/Wolfram choice) and leave the output as logits for the sigmoid in ``decode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from vaelab.config.model_config import (
    BatchNormPlacement,
    DecoderUpsample,
    Trunk,
    VaeConvConfig,
    VaeMlpConfig,
    VaeSmallConfig,
)
from vaelab.models.interface import Autoencoder, GaussianEncoder, VariationalAutoencoder
from vaelab.models.latent_penalties import penalty_terms, weighted_penalty
from vaelab.models.layers import (
    SameConv2d,
    residual_blocks,
    resize_conv_to,
    same_sizes,
    transposed_conv_to,
)
from vaelab.models.losses import LossSettings
from vaelab.models.zoo import loss_settings_from, register


class ConvVAE(VariationalAutoencoder):
    """Strided-conv VAE: ``(B, C, n, n) -> mu, logvar (B, z_dim) -> (B, C, n, n)``.

    Encoder: one 'same' stride-2 conv (+ ReLU) per entry of ``filters``, so the map
    shrinks ``n -> ceil(n/2) -> ...``; flatten; dense ``mu`` and ``logvar`` heads.
    Decoder: dense ``z_dim -> features`` (+ ReLU), reshape to the last encoder map,
    then one ×2 upsampling layer per encoder conv, mirroring the filters in reverse and
    ending in ``channels`` maps at exactly ``n × n`` (the encoder's recorded sizes are
    the targets). With ``filters=(128, 64, 32, 16)``, ``z_dim=256``, ``batch_norm="last"``
    at 80×80×3 this is study 001's "VAE Version 1": 305,808 + 203,251 trainable parameters.
    ``trunk="resnet"`` adds a residual block after each encoder conv and at each
    resolution of the decoder below the output (:class:`ConvTrunk`).
    """

    def __init__(
        self, *, image_size: int, channels: int, trunk: ConvTrunk, loss_settings: LossSettings
    ) -> None:
        super().__init__(
            image_size=image_size, channels=channels, z_dim=trunk.z_dim, loss_settings=loss_settings
        )
        body, features = trunk.encoder_body(image_size, channels)
        self.encoder = GaussianEncoder(body, features, trunk.z_dim)
        self.decoder = trunk.decoder(image_size, channels)


class VectorCodeConvAE(Autoencoder):
    """The deterministic twin of :class:`ConvVAE` (``variational: false``): the same
    convs and decoder, one dense head to ``z`` instead of ``mu`` and ``logvar``, and the
    reconstruction loss alone. ``(B, C, n, n) -> z (B, z_dim) -> (B, C, n, n)``: the AE
    that a VAE of the same bottleneck is compared with like for like. Its entry's latent
    penalties make it a WAE-MMD or an RAE (:mod:`vaelab.models.latent_penalties`)."""

    def __init__(
        self, *, image_size: int, channels: int, trunk: ConvTrunk, loss_settings: LossSettings
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=(trunk.z_dim,),
            loss_settings=loss_settings,
        )
        body, features = trunk.encoder_body(image_size, channels)
        self.encoder = nn.Sequential(body, nn.Linear(features, trunk.z_dim))
        self.decoder = trunk.decoder(image_size, channels)

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": self.encoder(x)}

    def decode_logits(self, z: Tensor) -> Tensor:
        logits: Tensor = self.decoder(z)
        return logits

    def loss(self, x: Tensor, outputs: dict[str, Tensor], *, epoch: int = 0) -> dict[str, Tensor]:
        """The autoencoder's terms plus the latent penalties its entry turns on (WAE-MMD's
        ``mmd``, RAE's ``latent_norm`` and ``decoder_reg``, unweighted; none by default), their
        weighted sum added to ``loss``."""
        terms = super().loss(x, outputs, epoch=epoch)
        penalties = penalty_terms(
            self.loss_settings,
            outputs["z"],
            outputs["recon"],
            decoder=self.decoder,
            decode=self.decode,
            training=self.training,
        )
        if not penalties:
            return terms
        return {
            **terms,
            **penalties,
            "loss": terms["loss"] + weighted_penalty(self.loss_settings, penalties),
        }


class ConvTrunk:
    """The layers :class:`ConvVAE` and :class:`VectorCodeConvAE` share, built from one
    ``vae_conv`` entry."""

    def __init__(
        self,
        *,
        filters: Sequence[int],
        z_dim: int,
        kernel: int = 3,
        batch_norm: BatchNormPlacement = "none",
        decoder_upsample: DecoderUpsample = "transpose",
        trunk: Trunk = "plain",
    ) -> None:
        self.filters = list(filters)
        if not self.filters:
            raise ValueError("filters needs at least one entry")
        self.z_dim, self.kernel, self.batch_norm, self.decoder_upsample = (
            z_dim,
            kernel,
            batch_norm,
            decoder_upsample,
        )
        self.trunk = trunk

    def _blocks(self, maps: int) -> list[nn.Module]:
        # Residual blocks carry batch norm only where every hidden conv does.
        return residual_blocks(self.trunk, maps, self.kernel, batch_norm=self.batch_norm == "all")

    def _sizes(self, image_size: int) -> list[int]:
        # sizes[i] is the map size entering encoder conv i; sizes[-1] is the bottleneck.
        return same_sizes(image_size, [2] * len(self.filters))

    def encoder_body(self, image_size: int, channels: int) -> tuple[nn.Module, int]:
        """The strided convs and the flatten: ``(B, C, n, n) -> (B, features)``, and
        ``features``."""
        size = self._sizes(image_size)[-1]
        body: list[nn.Module] = []
        in_maps = channels
        for index, maps in enumerate(self.filters):
            body += [SameConv2d(in_maps, maps, self.kernel, stride=2), nn.ReLU()]
            is_last = index == len(self.filters) - 1
            if self.batch_norm == "all" or (self.batch_norm == "last" and is_last):
                body.append(nn.BatchNorm2d(maps))
            body += self._blocks(maps)
            in_maps = maps
        body.append(nn.Flatten())
        return nn.Sequential(*body), self.filters[-1] * size * size

    def decoder(self, image_size: int, channels: int) -> nn.Module:
        """``(B, z_dim) -> (B, C, n, n)`` logits, mirroring the encoder's maps and sizes
        (a resnet trunk's blocks too: one at the bottleneck and after each hidden upsampling)."""
        sizes = self._sizes(image_size)
        bottleneck = (self.filters[-1], sizes[-1], sizes[-1])
        decoder: list[nn.Module] = [
            nn.Linear(self.z_dim, math.prod(bottleneck)),
            nn.ReLU(),
            nn.Unflatten(1, bottleneck),
        ]
        decoder += self._blocks(self.filters[-1])
        mirrored = self.filters[::-1]
        targets = [*mirrored[1:], channels]
        for index, (in_maps, out_maps) in enumerate(zip(mirrored, targets, strict=True)):
            in_size, out_size = sizes[-1 - index], sizes[-2 - index]
            if self.decoder_upsample == "transpose":
                decoder.append(
                    transposed_conv_to(
                        in_maps, out_maps, self.kernel, 2, in_size=in_size, out_size=out_size
                    )
                )
            else:
                decoder.append(
                    resize_conv_to(
                        in_maps, out_maps, self.kernel, in_size=in_size, out_size=out_size
                    )
                )
            if index < len(targets) - 1:
                decoder.append(nn.ReLU())
                if self.batch_norm == "all":
                    decoder.append(nn.BatchNorm2d(out_maps))
                decoder += self._blocks(out_maps)
        return nn.Sequential(*decoder)


class MlpVAE(VariationalAutoencoder):
    """Study 002's fully connected VAE: ``(B, C, n, n) -> (B, z_dim) -> (B, C, n, n)``.

    Encoder: flatten ``C·n·n`` → ``hidden[0]`` → ... (ReLU) → dense ``mu``/``logvar``.
    Decoder: ``z_dim`` → ``hidden[-1]`` → ... → ``hidden[0]`` (ReLU) → ``C·n·n`` → reshape.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        hidden: Sequence[int],
        z_dim: int,
        loss_settings: LossSettings,
    ) -> None:
        super().__init__(
            image_size=image_size, channels=channels, z_dim=z_dim, loss_settings=loss_settings
        )
        pixels = channels * image_size * image_size
        body: list[nn.Module] = [nn.Flatten()]
        width = pixels
        for units in hidden:
            body += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.encoder = GaussianEncoder(nn.Sequential(*body), width, z_dim)

        decoder: list[nn.Module] = []
        width = z_dim
        for units in reversed(list(hidden)):
            decoder += [nn.Linear(width, units), nn.ReLU()]
            width = units
        decoder += [nn.Linear(width, pixels), nn.Unflatten(1, self.image_shape)]
        self.decoder = nn.Sequential(*decoder)


class SmallConvVAE(VariationalAutoencoder):
    """Study 004's small conv VAE with an 8-d latent: ``(B, C, n, n) -> (B, 8) -> (B, C, n, n)``.

    Reading of the seed (its layer specs are pictures; the text says "3 convolution
    layers ... flatten ... output size of 5184" on 28×28×1 MNIST, z of 8, transposed
    convs in the decoder): Wolfram's ``ConvolutionLayer`` defaults to stride 1 and no
    padding, and three such convs with kernels 5, 5, 3 take 28 → 24 → 20 → 18, so 16
    maps flatten to 16·18·18 = 5184. Hence 'valid' stride-1 convs here (the one
    architecture without 'same' padding). The decoder mirrors them with stride-1
    transposed convs, each growing the map by ``k - 1``, back to exactly ``n × n``.
    The seed's ``sd`` head (``0.5 * Linear`` = log sigma) equals our logvar head.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        filters: Sequence[int],
        kernels: Sequence[int],
        z_dim: int,
        loss_settings: LossSettings,
    ) -> None:
        super().__init__(
            image_size=image_size, channels=channels, z_dim=z_dim, loss_settings=loss_settings
        )
        filters, kernels = list(filters), list(kernels)
        if len(filters) != len(kernels) or not filters:
            raise ValueError(f"need one kernel per filter, got filters={filters} kernels={kernels}")
        final = image_size - sum(k - 1 for k in kernels)
        if final < 1:
            raise ValueError(
                f"vae_small's unpadded convs shrink {image_size} px by {image_size - final} px; "
                f"use an image_size above {sum(k - 1 for k in kernels)} or smaller kernels"
            )
        features = filters[-1] * final * final
        self.flat_features = features

        body: list[nn.Module] = []
        in_maps = channels
        for maps, kernel in zip(filters, kernels, strict=True):
            body += [nn.Conv2d(in_maps, maps, kernel), nn.ReLU()]
            in_maps = maps
        body.append(nn.Flatten())
        self.encoder = GaussianEncoder(nn.Sequential(*body), features, z_dim)

        decoder: list[nn.Module] = [
            nn.Linear(z_dim, features),
            nn.ReLU(),
            nn.Unflatten(1, (filters[-1], final, final)),
        ]
        mirrored = filters[::-1]
        targets = [*mirrored[1:], channels]
        for index, (in_maps, out_maps, kernel) in enumerate(
            zip(mirrored, targets, kernels[::-1], strict=True)
        ):
            decoder.append(nn.ConvTranspose2d(in_maps, out_maps, kernel))
            if index < len(targets) - 1:
                decoder.append(nn.ReLU())
        self.decoder = nn.Sequential(*decoder)


# Configurations that reproduce the studies' networks (image size comes from the data).
VAE_CONV_PRESETS: dict[str, VaeConvConfig] = {
    # Study 001 "VAE Version 1" (80×80×3 CelebA faces): encoder 305,808 and decoder
    # 203,251 trainable parameters; batch norm after the last encoder conv only.
    "study001_vae_v1": VaeConvConfig(filters=(128, 64, 32, 16), z_dim=256, batch_norm="last"),
    # Study 003 (CelebA): filters (32, 64, 128, 256), 3×3 kernels, stride 2, BCE, fact=5.
    "study003_celeba": VaeConvConfig(
        filters=(32, 64, 128, 256), z_dim=256, recon_loss="bce", kl_weight=5.0
    ),
}


def conv_trunk(config: VaeConvConfig) -> ConvTrunk:
    """The encoder and decoder layers of a ``vae_conv`` entry (or an entry built on its knobs)."""
    return ConvTrunk(
        filters=config.filters,
        z_dim=config.z_dim,
        kernel=config.kernel,
        batch_norm=config.batch_norm,
        decoder_upsample=config.decoder_upsample,
        trunk=config.trunk,
    )


@register("vae_conv")
def build_vae_conv(
    config: VaeConvConfig, *, image_size: int, channels: int
) -> ConvVAE | VectorCodeConvAE:
    model = ConvVAE if config.variational else VectorCodeConvAE
    return model(
        image_size=image_size,
        channels=channels,
        trunk=conv_trunk(config),
        loss_settings=loss_settings_from(config),
    )


@register("vae_mlp")
def build_vae_mlp(config: VaeMlpConfig, *, image_size: int, channels: int) -> MlpVAE:
    return MlpVAE(
        image_size=image_size,
        channels=channels,
        hidden=config.hidden,
        z_dim=config.z_dim,
        loss_settings=loss_settings_from(config),
    )


@register("vae_small")
def build_vae_small(config: VaeSmallConfig, *, image_size: int, channels: int) -> SmallConvVAE:
    return SmallConvVAE(
        image_size=image_size,
        channels=channels,
        filters=config.filters,
        kernels=config.kernels,
        z_dim=config.z_dim,
        loss_settings=loss_settings_from(config),
    )
