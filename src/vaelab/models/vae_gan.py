"""VAE-GAN (Larsen, Sønderby, Larochelle and Winther 2016, "Autoencoding beyond pixels using
a learned similarity metric"): the ``vae_conv`` VAE plus a convolutional patch discriminator.

The discriminator ``D`` judges 'is this a real image' once per patch: 4×4 stride-2 'same'
convs with LeakyReLU(0.2) (DCGAN's and pix2pix's PatchGAN's layers, without their batch norm,
so that an image's features do not depend on the rest of its batch), then a 3×3 conv to one
logit per patch, ``(B, C, n, n) -> (B, 1, m, m)`` with ``m = ceil(n / 2^layers)``.

The VAE's loss (:meth:`VaeGan.loss`, what the model optimiser minimises) adds to the ELBO's
terms, with ``D`` frozen (its weights enter as constants, so no gradient reaches them):

- ``feature``: the reconstruction measured after ``D``'s ``feature_layer``-th conv (Larsen's
  Dis_l): a Gaussian of unit variance around the real image's maps, i.e.
  ``0.5 · Σ (Dis_l(x̃) − Dis_l(x))²`` summed per image, averaged over the batch;
- ``adversarial``: ``−log D(x̃)`` of the reconstructions, and in training ``adversarial_prior``,
  ``−log D(x_p)`` of decodes of ``z ~ N(0, I)`` (Larsen's prior samples), the non-saturating
  generator loss, each summed over the patches of an image like a reconstruction over its
  pixels, averaged over the batch;
- ``loss``: ``recon_weight · recon + kl_weight · kl_loss + feature_weight · feature +
  adversarial_weight · (adversarial + adversarial_prior)``.

:meth:`VaeGan.discriminator_loss` is the discriminator's (its own optimiser minimises it, after
the model's step, on the step's reconstructions and prior samples, detached): Larsen's
``−(log D(x) + log(1 − D(x̃)) + log(1 − D(x_p)))`` per patch, summed per image the same way.

One loss trains encoder and decoder together, as most VAE-GAN code does; Larsen kept the
adversarial term out of the encoder's gradient and weighted the decoder's feature term by a γ.
The discriminator is a submodule, so ``model.pt`` and the checkpoint carry its weights and a
saved model loads strictly; serving (``forward``, ``encode``, ``decode``, ``sample``) never
calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from vaelab.config.model_config import VaeGanConfig
from vaelab.models.layers import SameConv2d
from vaelab.models.losses import LossSettings
from vaelab.models.vae import ConvTrunk, ConvVAE, conv_trunk
from vaelab.models.zoo import loss_settings_from, register

# The discriminator's Adam betas: DCGAN's (Radford, Metz and Chintala 2016), which most
# VAE-GAN code keeps; a β1 of 0.9 lets the momentum lag behind a moving generator.
DISCRIMINATOR_BETAS = (0.5, 0.999)
LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class AdversarialSettings:
    """The adversarial knobs of a ``vae_gan`` entry (its pydantic model checked them)."""

    feature_layer: int = 2
    feature_weight: float = 1.0
    adversarial_weight: float = 1.0
    discriminator_lr: float | None = None  # None: train.lr


class PatchDiscriminator(nn.Module):
    """``(B, C, n, n)`` images → ``(B, 1, m, m)`` patch logits and the ``feature_layer``-th
    conv's maps."""

    def __init__(self, channels: int, widths: Sequence[int], feature_layer: int) -> None:
        super().__init__()
        widths = list(widths)
        if not 1 <= feature_layer <= len(widths):
            raise ValueError(f"feature_layer must be 1 to {len(widths)}, got {feature_layer}")
        self.feature_layer = feature_layer
        self.convs = nn.ModuleList()
        for in_maps, maps in zip([channels, *widths[:-1]], widths, strict=True):
            self.convs.append(
                nn.Sequential(SameConv2d(in_maps, maps, 4, stride=2), nn.LeakyReLU(LEAKY_SLOPE))
            )
        self.logits = SameConv2d(widths[-1], 1, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = x
        for index, conv in enumerate(self.convs, start=1):
            x = conv(x)
            if index == self.feature_layer:
                features = x
        return self.logits(x), features


def patch_bce(logits: Tensor, real: bool) -> Tensor:
    """``−log D`` (``real``) or ``−log(1 − D)`` of ``(B, 1, m, m)`` patch logits, summed over each
    image's patches and averaged over the batch: a scalar."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return (
        F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        .flatten(1)
        .sum(dim=1)
        .mean()
    )


def feature_error(fake: Tensor, real: Tensor) -> Tensor:
    """``0.5 · Σ (fake − real)²`` over each image's feature maps, averaged over the batch: the
    negative log-likelihood of a unit-variance Gaussian around ``real``, without its constant."""
    return 0.5 * (fake.float() - real.float()).square().flatten(1).sum(dim=1).mean()


class VaeGan(ConvVAE):
    """:class:`ConvVAE` (built first, so its weights are a ``vae_conv``'s of the same knobs)
    with a :class:`PatchDiscriminator` and the adversarial terms in its loss."""

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        trunk: ConvTrunk,
        discriminator: Sequence[int],
        adversarial: AdversarialSettings,
        loss_settings: LossSettings,
    ) -> None:
        super().__init__(
            image_size=image_size, channels=channels, trunk=trunk, loss_settings=loss_settings
        )
        self.adversarial = adversarial
        self.discriminator = PatchDiscriminator(channels, discriminator, adversarial.feature_layer)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """:meth:`ConvVAE.forward`, plus in training mode ``prior_logits`` and ``prior``: one decode
        of ``z ~ N(0, I)`` per image, for the adversarial terms (eval mode draws nothing more)."""
        outputs = super().forward(x)
        if self.training:
            z = torch.randn(outputs["mu"].shape, device=x.device)
            logits = self.decode_logits(z)
            outputs |= {"prior_logits": logits, "prior": torch.sigmoid(logits)}
        return outputs

    def generator_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the discriminator's: what the model optimiser steps."""
        judged = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in judged]

    def discriminator_optimizer(self, lr: float) -> torch.optim.Adam:
        """The discriminator's Adam: ``discriminator_lr`` (else ``lr``, the model's) and
        DCGAN's betas."""
        own = self.adversarial.discriminator_lr
        return torch.optim.Adam(
            self.discriminator.parameters(),
            lr=lr if own is None else own,
            betas=DISCRIMINATOR_BETAS,
        )

    def _judged_frozen(self, images: Tensor) -> tuple[Tensor, Tensor]:
        # The discriminator with its weights as constants: the gradient reaches the images only.
        weights = {name: value.detach() for name, value in self.discriminator.named_parameters()}
        judged: tuple[Tensor, Tensor] = functional_call(self.discriminator, weights, (images,))
        return judged

    def loss(self, x: Tensor, outputs: dict[str, Tensor], *, epoch: int = 0) -> dict[str, Tensor]:
        """The ELBO's terms (:meth:`VariationalAutoencoder.loss`) plus ``feature``,
        ``adversarial`` and in training ``adversarial_prior``; ``loss`` adds them, weighted."""
        settings = self.adversarial
        terms = super().loss(x, outputs, epoch=epoch)
        with torch.no_grad():
            _, real_features = self.discriminator(x)
        logits, features = self._judged_frozen(outputs["recon"])
        terms |= {
            "feature": feature_error(features, real_features),
            "adversarial": patch_bce(logits, real=True),
        }
        fooled = terms["adversarial"]
        if "prior" in outputs:
            terms["adversarial_prior"] = patch_bce(
                self._judged_frozen(outputs["prior"])[0], real=True
            )
            fooled = fooled + terms["adversarial_prior"]
        terms["loss"] = (
            terms["loss"]
            + settings.feature_weight * terms["feature"]
            + settings.adversarial_weight * fooled
        )
        return terms

    def discriminator_loss(self, x: Tensor, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The discriminator's terms for real images ``x`` against ``outputs``' reconstructions
        and (in training) prior samples, detached: ``discriminator_loss``, what its optimiser
        minimises, and ``discriminator_real`` / ``discriminator_fake``, the mean D(x) and D(x̃)."""
        fakes = [outputs["recon"]] + ([outputs["prior"]] if "prior" in outputs else [])
        batch = torch.cat([x, *(fake.detach().to(x.dtype) for fake in fakes)])
        logits = self.discriminator(batch)[0].chunk(1 + len(fakes))
        loss = patch_bce(logits[0], real=True) + sum(
            patch_bce(fake, real=False) for fake in logits[1:]
        )
        return {
            "discriminator_loss": loss,
            "discriminator_real": torch.sigmoid(logits[0].detach().float()).mean(),
            "discriminator_fake": torch.sigmoid(logits[1].detach().float()).mean(),
        }


@register("vae_gan")
def build_vae_gan(config: VaeGanConfig, *, image_size: int, channels: int) -> VaeGan:
    adversarial = AdversarialSettings(
        feature_layer=config.feature_layer,
        feature_weight=config.feature_weight,
        adversarial_weight=config.adversarial_weight,
        discriminator_lr=config.discriminator_lr,
    )
    return VaeGan(
        image_size=image_size,
        channels=channels,
        trunk=conv_trunk(config),
        discriminator=config.discriminator,
        adversarial=adversarial,
        loss_settings=loss_settings_from(config),
    )
