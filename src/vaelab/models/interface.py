"""The one model interface every architecture implements (after PyTorch-VAE's ``BaseVAE``).

Shapes: images ``x`` are ``(B, C, H, W)`` float in [0, 1] with ``H == W == image_size``;
a latent batch ``z`` is ``(B, *latent_shape)`` — ``(B, z_dim)`` for VAEs, a feature map
``(B, C', H', W')`` for the convolutional autoencoders.

- ``encode(x)`` → ``{"z"}`` (AE) or ``{"mu", "logvar", "z"}`` (VAE, with ``z = mu``:
  the deterministic code used for evaluation and latent arithmetic).
- ``decode_logits(z)`` → pre-sigmoid images; ``decode(z)`` → images in [0, 1].
- ``forward(x)`` → ``{"z", "logits", "recon"}`` plus ``{"mu", "logvar"}`` for VAEs;
  VAEs sample ``z`` with the reparameterisation trick in training mode only.
- ``loss(x, outputs, epoch=...)`` → named scalar terms, ``"loss"`` the one to minimise
  (plus ``"sigma"`` for a Gaussian decoder: its σ on this batch, and ``"msssim"`` /
  ``"ffl"`` when their weights are on: :mod:`vaelab.models.image_losses`).
- ``sample(n)`` → ``decode(z)`` with ``z ~ N(0, I)``; for a plain AE this shows why
  its latent space is no generative model (study 003).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from vaelab.models.image_losses import add_image_terms, image_terms
from vaelab.models.layers import gaussian_sample
from vaelab.models.losses import (
    LossSettings,
    as_tensor,
    decoder_log_sigma,
    free_bits_kl,
    kl_divergence,
    kl_weight_at,
    reconstruction_loss,
)


class Autoencoder(nn.Module, ABC):
    """Base class: a deterministic autoencoder with a reconstruction loss."""

    is_variational: ClassVar[bool] = False

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        latent_shape: tuple[int, ...],
        loss_settings: LossSettings,
    ) -> None:
        super().__init__()
        if image_size < 1 or channels < 1:
            raise ValueError(
                f"image_size and channels must be positive, got {image_size} and {channels}"
            )
        self.image_size = image_size
        self.channels = channels
        self.latent_shape = tuple(latent_shape)
        self.loss_settings = loss_settings
        if loss_settings.recon_loss == "gaussian" and loss_settings.sigma == "learned":
            # The σ-VAE's one log σ for every pixel, trained with the weights and saved with
            # them in the state dict; zeros draw no random numbers, so building it moves no
            # other layer's initialisation.
            self.log_sigma = nn.Parameter(torch.zeros(()))

    @property
    def latent_dim(self) -> int:
        """Number of latent values per image (``prod(latent_shape)``)."""
        return math.prod(self.latent_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this model takes and returns."""
        return (self.channels, self.image_size, self.image_size)

    @abstractmethod
    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, C, H, W)`` images → ``{"z": (B, *latent_shape)}`` (VAEs add ``mu``, ``logvar``)."""

    @abstractmethod
    def decode_logits(self, z: Tensor) -> Tensor:
        """``(B, *latent_shape)`` → ``(B, C, H, W)`` logits (images before the sigmoid)."""

    def decode(self, z: Tensor) -> Tensor:
        """``(B, *latent_shape)`` → ``(B, C, H, W)`` images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, C, H, W)`` → ``{"z", "logits", "recon"}``; logits and recon are
        ``(B, C, H, W)``."""
        codes = self.encode(x)
        logits = self.decode_logits(codes["z"])
        return {**codes, "logits": logits, "recon": torch.sigmoid(logits)}

    def decoder_log_sigma(self, recon: Tensor, x: Tensor) -> Tensor | None:
        """The Gaussian decoder's 0-d log σ for reconstructions ``recon`` of a batch ``x``
        (``sigma`` of the config); ``None`` for the other reconstruction losses."""
        settings = self.loss_settings
        if settings.recon_loss != "gaussian":
            return None
        return decoder_log_sigma(settings.sigma, recon, x, getattr(self, "log_sigma", None))

    def reconstruction_terms(self, x: Tensor, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"recon"}``: the per-image summed reconstruction error (batch mean),
        ``"sigma"`` (the decoder's σ on this batch) for a Gaussian decoder, and ``"msssim"``,
        ``"ffl"`` where their weights are above 0 (batch means, :func:`image_terms`)."""
        log_sigma = self.decoder_log_sigma(outputs["recon"], x)
        recon = reconstruction_loss(
            outputs["logits"], outputs["recon"], x, self.loss_settings.recon_loss, log_sigma
        )
        terms = (
            {"recon": recon}
            if log_sigma is None
            else {"recon": recon, "sigma": log_sigma.detach().exp()}
        )
        return {**terms, **image_terms(outputs["recon"], x, self.loss_settings)}

    def loss(self, x: Tensor, outputs: dict[str, Tensor], *, epoch: int = 0) -> dict[str, Tensor]:
        """Named scalar terms for a batch ``x`` and its ``forward`` outputs.

        ``recon``: per-image summed reconstruction error (batch mean);
        ``loss``: ``recon_weight * recon`` plus ``msssim_weight * msssim`` and
        ``ffl_weight * ffl`` where on; ``sigma`` for a Gaussian decoder.
        ``epoch`` is unused here (VAEs use it).
        """
        terms = self.reconstruction_terms(x, outputs)
        return {
            **terms,
            "loss": add_image_terms(
                self.loss_settings.recon_weight * terms["recon"], terms, self.loss_settings
            ),
        }

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Decode ``n`` latents drawn from N(0, I): ``(n, C, H, W)`` images in [0, 1], no gradients.

        ``generator`` makes the draw reproducible; it may live on the CPU while the
        model is on an accelerator. Batch-norm layers follow the model's train/eval mode.
        """
        reference = next(self.parameters())
        noise_device = generator.device if generator is not None else reference.device
        z = torch.randn((n, *self.latent_shape), generator=generator, device=noise_device)
        return self.decode(z.to(device=reference.device, dtype=reference.dtype))


class GaussianEncoder(nn.Module):
    """Feature extractor plus two dense heads: ``(B, C, H, W) -> ((B, z_dim), (B, z_dim))``.

    ``body`` must end in a flattened ``(B, features)`` tensor; ``mu`` and ``logvar`` are
    separate linear maps of it (the two Dense layers of study 001's encoder).
    """

    def __init__(self, body: nn.Module, features: int, z_dim: int) -> None:
        super().__init__()
        self.body = body
        self.mu = nn.Linear(features, z_dim)
        # Predicting log-variance keeps the variance positive without a constraint;
        # study 004's "0.5 * Linear" for log sigma is the same map scaled by 2.
        self.logvar = nn.Linear(features, z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return self.mu(features), self.logvar(features)


class VariationalAutoencoder(Autoencoder):
    """A VAE with a diagonal Gaussian posterior, a N(0, I) prior and a Bernoulli/Gaussian decoder.

    Subclasses build ``self.encoder`` (a :class:`GaussianEncoder`) and ``self.decoder``
    (``(B, z_dim) -> (B, C, H, W)`` logits); everything else lives here.
    """

    is_variational: ClassVar[bool] = True
    encoder: GaussianEncoder
    decoder: nn.Module

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        z_dim: int,
        loss_settings: LossSettings,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=(z_dim,),
            loss_settings=loss_settings,
        )
        self.z_dim = z_dim

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, C, H, W)`` → ``{"mu", "logvar", "z"}``, each ``(B, z_dim)``, with ``z = mu``."""
        mu, logvar = self.encoder(x)
        return {"mu": mu, "logvar": logvar, "z": mu}

    def decode_logits(self, z: Tensor) -> Tensor:
        logits: Tensor = self.decoder(z)
        return logits

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, C, H, W)`` → ``{"mu", "logvar", "z", "logits", "recon"}``.

        In training mode ``z`` is a reparameterised sample of q(z|x) so gradients reach
        ``mu`` and ``logvar``; in eval mode ``z = mu`` so reconstructions are deterministic.
        """
        codes = self.encode(x)
        if self.training:
            codes["z"] = gaussian_sample(codes["mu"], codes["logvar"])
        logits = self.decode_logits(codes["z"])
        return {**codes, "logits": logits, "recon": torch.sigmoid(logits)}

    def loss(self, x: Tensor, outputs: dict[str, Tensor], *, epoch: int = 0) -> dict[str, Tensor]:
        """Named scalar terms of the (weighted) negative ELBO.

        ``recon``: reconstruction error per image; ``kl``: KL(q(z|x) || N(0, I)) summed
        over dimensions; ``kl_weight``: the KL weight after warm-up at ``epoch``;
        ``kl_loss``: the KL with the free-bits floor applied (``kl`` when off);
        ``elbo``: ``-(recon + kl)`` unweighted — the evidence lower bound in nats for
        ``bce`` (Bernoulli decoder) and ``gaussian``, up to a constant for ``mse``;
        ``loss``: ``recon_weight * recon + kl_weight * kl_loss`` (plus ``msssim_weight *
        msssim`` and ``ffl_weight * ffl`` where on, which the ELBO leaves out); ``sigma``:
        the Gaussian decoder's σ (only with ``gaussian``). All batch means.
        """
        settings = self.loss_settings
        mu, logvar = outputs["mu"], outputs["logvar"]
        reconstruction = self.reconstruction_terms(x, outputs)
        recon = reconstruction["recon"]
        kl = kl_divergence(mu, logvar)
        kl_loss = free_bits_kl(mu, logvar, settings.free_bits) if settings.free_bits > 0 else kl
        weight = kl_weight_at(epoch, settings.kl_weight, settings.kl_warmup_epochs)
        return {
            **reconstruction,
            "kl": kl,
            "kl_weight": as_tensor(weight, recon),
            "kl_loss": kl_loss,
            "elbo": -(recon + kl),
            "loss": add_image_terms(
                settings.recon_weight * recon + weight * kl_loss, reconstruction, settings
            ),
        }
