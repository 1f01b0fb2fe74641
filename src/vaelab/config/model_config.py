"""One entry of the ``models:`` mapping in params.yaml: which architecture, and its knobs.

Each entry is a discriminated union on ``arch``::

    models:
      ae_pool:   {arch: ae_pool}
      ae_conv:   {arch: ae_conv}
      accordion: {arch: accordion, folds: 2}
      vae:       {arch: vae_conv, filters: [32, 64, 128, 256], z_dim: 256,
                  recon_loss: bce, kl_weight: 5.0}
      mnist_vae: {arch: vae_mlp, hidden: [512, 256], z_dim: 2}
      small:     {arch: vae_small, z_dim: 8}
      gan:       {arch: vae_gan, filters: [16, 32, 64], z_dim: 16, discriminator: [32, 64, 128]}

Image size and channel count are not model knobs: they come from ``data:`` and are
passed to :func:`vaelab.models.build_model`, so one entry fits every data set.
Plain autoencoders accept only the reconstruction-loss keys; a KL key on them is an
unknown-key error rather than a setting that silently does nothing.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, TypeAdapter, field_validator, model_validator

from vaelab.config.penalties import LatentPenaltyFields
from vaelab.config.section import Section

ReconLoss = Literal["bce", "mse", "gaussian"]
# The Gaussian decoder's σ: one shared log σ trained with the weights, the batch's
# analytic optimum, or a fixed positive number.
DecoderSigma = Literal["learned", "optimal"] | float
BatchNormPlacement = Literal["none", "last", "all"]
DecoderUpsample = Literal["transpose", "resize"]
Trunk = Literal["plain", "resnet"]


class ReconLossFields(Section):
    """Reconstruction term shared by every architecture."""

    recon_loss: ReconLoss = Field(
        "bce",
        description="bce: binary cross-entropy on the decoder logits, pixels in [0, 1] as soft "
        "targets; mse: squared error of the sigmoid output; gaussian: the negative "
        "log-likelihood of N(sigmoid output, σ²) per pixel (σ-VAE, Rybkin et al. 2021), in nats "
        "like bce. All are summed over an image's pixels and averaged over the batch.",
    )
    sigma: DecoderSigma = Field(
        "learned",
        description="The gaussian decoder's σ (bce and mse refuse any other value): learned "
        "(one log σ, a parameter of the model, starting at σ = 1), optimal (the batch's RMS "
        "error, not differentiated) or a fixed σ > 0. learned and optimal are softly clipped at "
        "log σ = −6.",
    )
    sigma_lr: float | None = Field(
        0.02,
        gt=0.0,
        allow_inf_nan=False,
        description="The learned σ's own Adam learning rate (recon_loss: gaussian, sigma: "
        "learned); at train.lr log σ moves about 0.001 a step, too slowly to follow the RMS "
        "error. null: train.lr.",
    )
    recon_weight: float = Field(
        1.0,
        gt=0.0,
        description="Weight of the reconstruction term. Study 002's per-pixel mean BCE times "
        "6000 on MNIST is about 6000 / 784 ≈ 7.7 with the per-image sum used here.",
    )
    msssim_weight: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="Weight of (1 − MS-SSIM) times the image's C·H·W values added to the loss "
        "(Wang et al. 2003); 0 = off. Not part of a VAE's ELBO.",
    )
    ffl_weight: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="Weight of the focal frequency loss (Jiang et al. 2021), summed over "
        "channels and frequencies, added to the loss; 0 = off. Not part of a VAE's ELBO.",
    )
    ffl_alpha: float = Field(
        1.0,
        ge=0.0,
        allow_inf_nan=False,
        description="The focal frequency loss weights each frequency by its error to this "
        "power, relative to the largest (0: the plain spectrum distance, = the mse loss); only "
        "with ffl_weight above 0.",
    )
    epochs: PositiveInt | None = Field(
        None,
        description="Epochs for this variant; null = train.epochs. A small net may need more "
        "than a big one.",
    )

    @field_validator("sigma", mode="before")
    @classmethod
    def _sigma_is_a_setting(cls, sigma: Any) -> Any:
        # One message for the whole union, not one per member of it.
        if sigma in ("learned", "optimal"):
            return sigma
        if (
            isinstance(sigma, int | float)
            and not isinstance(sigma, bool)
            and math.isfinite(sigma)
            and sigma > 0
        ):
            return float(sigma)
        raise ValueError(f"must be 'learned', 'optimal' or a fixed σ > 0 (a number), got {sigma!r}")

    @model_validator(mode="after")
    def _sigma_only_with_a_gaussian_decoder(self) -> ReconLossFields:
        if self.recon_loss != "gaussian" and self.sigma != type(self).model_fields["sigma"].default:
            raise ValueError(
                f"sigma would do nothing with recon_loss: {self.recon_loss} "
                "(only the gaussian decoder has a σ); remove it or set recon_loss: gaussian"
            )
        return self

    @model_validator(mode="after")
    def _sigma_lr_only_with_a_learned_sigma(self) -> ReconLossFields:
        default = type(self).model_fields["sigma_lr"].default
        if self.sigma_lr != default and (self.recon_loss != "gaussian" or self.sigma != "learned"):
            raise ValueError(
                "sigma_lr would do nothing without a learned σ (recon_loss: gaussian, "
                "sigma: learned); remove it"
            )
        return self

    @model_validator(mode="after")
    def _ffl_alpha_only_with_the_focal_frequency_term(self) -> ReconLossFields:
        if self.ffl_weight == 0 and self.ffl_alpha != type(self).model_fields["ffl_alpha"].default:
            raise ValueError(
                "ffl_alpha would do nothing with ffl_weight: 0 (the focal frequency term is off); "
                "remove it or set ffl_weight above 0"
            )
        return self


class TrunkFields(ReconLossFields):
    """The layers between the strided convs of a conv encoder and decoder."""

    trunk: Trunk = Field(
        "plain",
        description="plain: the strided convs alone, the studies' networks; resnet: a "
        "pre-activation residual block, x + conv(relu(conv(relu(x)))), after each strided conv "
        "of the encoder and at each resolution of the decoder below the output (study 003's "
        "third reason for blur: too plain a net).",
    )


class KlFields(ReconLossFields):
    """The KL term of a VAE, plus the two usual remedies for posterior collapse."""

    kl_weight: float = Field(
        1.0,
        ge=0.0,
        description="The KL term's weight relative to the reconstruction (beta; study 003's fact).",
    )
    kl_warmup_epochs: int = Field(
        0,
        ge=0,
        description="The KL weight ramps linearly from 0 to kl_weight over this many epochs "
        "(0 = off).",
    )
    free_bits: float = Field(
        0.0,
        ge=0.0,
        description="Each latent dimension's KL (batch mean) counts as at least this many "
        "nats, so collapsing it below the floor gains nothing (0 = off).",
    )


# Knobs of a VAE's posterior that a deterministic autoencoder (its twin, or a WAE / RAE) has not.
POSTERIOR_KNOBS = frozenset({"variational", *KlFields.model_fields}) - frozenset(
    ReconLossFields.model_fields
)


class AePoolConfig(ReconLossFields):
    """Study 000 "Version 1": strided convs with max pooling, upsampling in the decoder."""

    arch: Literal["ae_pool"] = Field("ae_pool", description="The architecture.")


class AeConvConfig(TrunkFields):
    """Study 000 "Version 2": three strided convs, batch norm, three transposed convs."""

    arch: Literal["ae_conv"] = Field("ae_conv", description="The architecture.")


class AccordionConfig(TrunkFields):
    """Study 001: ``folds`` copies of ae_conv in sequence, trained end to end."""

    arch: Literal["accordion"] = Field("accordion", description="The architecture.")
    folds: int = Field(2, ge=1, le=16, description="Copies of ae_conv in sequence.")


class VaeConvConfig(KlFields, TrunkFields, LatentPenaltyFields):
    """Convolutional VAE: strided 'same' convs, dense mu/logvar heads, mirrored decoder."""

    arch: Literal["vae_conv"] = Field("vae_conv", description="The architecture.")
    filters: tuple[PositiveInt, ...] = Field(
        (32, 64, 128, 256),
        min_length=1,
        description="Encoder maps per stride-2 conv; the decoder mirrors them in reverse order.",
    )
    kernel: PositiveInt = Field(3, description="Side of every conv's kernel (odd).")
    z_dim: PositiveInt = Field(256, description="Latent dimensions.")
    batch_norm: BatchNormPlacement = Field(
        "none",
        description="none | last (after the last encoder conv, as in study 001) | all (after "
        "every hidden conv of encoder and decoder).",
    )
    decoder_upsample: DecoderUpsample = Field(
        "transpose",
        description="transpose: stride-2 transposed convs; resize: nearest-neighbour ×2 then a "
        "stride-1 conv, which avoids the checkerboard artefacts study 003 mentions.",
    )
    variational: bool = Field(
        True,
        description="false: the same encoder and decoder as a deterministic AE (one dense head "
        "to z, no KL term), to compare a VAE with an AE of the same bottleneck; with a latent "
        "penalty that AE is a WAE-MMD or an RAE.",
    )

    @model_validator(mode="after")
    def _no_kl_knobs_without_a_posterior(self) -> VaeConvConfig:
        if not self.variational:
            defaults = KlFields.model_fields
            changed = [
                name
                for name in ("kl_weight", "kl_warmup_epochs", "free_bits")
                if getattr(self, name) != defaults[name].default
            ]
            if changed:
                raise ValueError(
                    f"{', '.join(changed)} would do nothing with variational: false "
                    "(there is no KL term); remove them or set variational: true"
                )
        elif self.penalties_set():
            raise ValueError(
                f"{', '.join(self.penalties_set())}: a deterministic autoencoder's penalty "
                "(WAE-MMD, RAE), while a VAE has its KL term; remove it or set variational: false"
            )
        return self

    @field_validator("kernel")
    @classmethod
    def _kernel_is_odd(cls, kernel: int) -> int:
        # Only odd kernels let a stride-2 transposed conv hit both 2n-1 and 2n outputs,
        # which the decoder needs to undo ceil(n/2) for odd and even sizes alike.
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (3, 5, ...), got {kernel}")
        return kernel


class VaeGanConfig(VaeConvConfig):
    """VAE-GAN (Larsen et al. 2016): vae_conv's encoder and decoder, a patch discriminator,
    the reconstruction also measured in one of its feature layers, an adversarial term."""

    # The union's tag narrows to this subclass's own; mypy reads that as an incompatible
    # override of vae_conv's tag.
    arch: Literal["vae_gan"] = Field("vae_gan", description="The architecture.")  # type: ignore[assignment]
    recon_weight: float = Field(
        1.0,
        ge=0.0,
        description="The pixel term's weight; 0 is Larsen's VAE-GAN, whose reconstruction is "
        "measured in the discriminator's features alone (feature_weight must then be above 0).",
    )
    discriminator: tuple[PositiveInt, ...] = Field(
        (32, 64, 128),
        min_length=1,
        description="Maps of the discriminator's 4x4 stride-2 convs (LeakyReLU 0.2, no "
        "normalisation), then a 3x3 conv to one logit per patch.",
    )
    feature_layer: PositiveInt = Field(
        2,
        description="The discriminator conv (1 = the first) after which the feature "
        "reconstruction is measured (Larsen's Dis_l).",
    )
    feature_weight: float = Field(
        1.0, ge=0.0, description="Weight of the feature reconstruction term."
    )
    adversarial_weight: float = Field(
        1.0,
        ge=0.0,
        description="Weight of -log D of reconstructions and prior samples, summed over each "
        "image's patches (0: the discriminator is a learned metric only).",
    )
    discriminator_lr: float | None = Field(
        None, gt=0.0, description="The discriminator's Adam learning rate; null = train.lr."
    )

    @model_validator(mode="after")
    def _a_gan_of_a_vae_that_reconstructs(self) -> VaeGanConfig:
        if not self.variational:
            raise ValueError(
                "vae_gan needs variational: true (its discriminator also judges samples of the "
                "prior); remove variational: false"
            )
        if self.feature_layer > len(self.discriminator):
            raise ValueError(
                f"feature_layer {self.feature_layer} is past the discriminator's "
                f"{len(self.discriminator)} conv(s); use 1 to {len(self.discriminator)}"
            )
        if self.recon_weight == 0 and self.feature_weight == 0:
            raise ValueError(
                "recon_weight and feature_weight are both 0, so nothing trains the reconstruction; "
                "set either above 0"
            )
        return self


class VaeMlpConfig(KlFields):
    """Study 002: fully connected VAE on flattened images (MNIST with z of 2, 4 or 10)."""

    arch: Literal["vae_mlp"] = Field("vae_mlp", description="The architecture.")
    hidden: tuple[PositiveInt, ...] = Field(
        (512, 256),
        description="Encoder hidden widths; the decoder uses them in reverse. Empty = linear maps.",
    )
    z_dim: PositiveInt = Field(2, description="Latent dimensions.")


class VaeSmallConfig(KlFields):
    """Study 004: three stride-1 unpadded convs, dense heads, transposed-conv decoder."""

    arch: Literal["vae_small"] = Field("vae_small", description="The architecture.")
    recon_loss: ReconLoss = Field(
        "mse", description="As for every arch; study 004 used the mean squared error (mse)."
    )
    z_dim: PositiveInt = Field(8, description="Latent dimensions.")
    filters: tuple[PositiveInt, ...] = Field(
        (32, 32, 16),
        min_length=1,
        description="Maps of the stride-1 unpadded convs (with the default kernels a 28×28 "
        "image shrinks to 18×18: 5184 features).",
    )
    kernels: tuple[PositiveInt, ...] = Field(
        (5, 5, 3), min_length=1, description="Kernel side of each conv, one per filters entry."
    )

    @model_validator(mode="after")
    def _one_kernel_per_filter(self) -> VaeSmallConfig:
        if len(self.filters) != len(self.kernels):
            raise ValueError(
                f"filters and kernels need one entry per conv layer "
                f"(got {len(self.filters)} filters and {len(self.kernels)} kernels)"
            )
        return self


AnyModelConfig = (
    AePoolConfig
    | AeConvConfig
    | AccordionConfig
    | VaeConvConfig
    | VaeGanConfig
    | VaeMlpConfig
    | VaeSmallConfig
)

# Use as a field type, e.g. ``models: dict[str, ModelConfig]``: pydantic picks the
# class from ``arch`` and reports errors against that class only.
ModelConfig = Annotated[AnyModelConfig, Field(discriminator="arch")]

_ADAPTER: TypeAdapter[AnyModelConfig] = TypeAdapter(ModelConfig)


def parse_model_config(raw: object) -> AnyModelConfig:
    """Validate one ``models:`` entry (a mapping) into its config class."""
    return _ADAPTER.validate_python(raw)


__all__ = [
    "AccordionConfig",
    "AeConvConfig",
    "AePoolConfig",
    "AnyModelConfig",
    "ModelConfig",
    "VaeConvConfig",
    "VaeGanConfig",
    "VaeMlpConfig",
    "VaeSmallConfig",
    "parse_model_config",
]
