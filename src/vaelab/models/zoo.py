"""``arch`` name → builder, and :func:`build_model`, the one way configs become models.

A builder takes the validated config entry plus the data's geometry::

    @register("my_arch")
    def build_my_arch(config: MyConfig, *, image_size: int, channels: int) -> Autoencoder: ...

Image size and channels come from the data, never from the model entry, so the same
``models:`` entry builds a 25×25 grey model for LFW and a 64×64 RGB one for CelebA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from vaelab.models.losses import LossSettings

if TYPE_CHECKING:
    from vaelab.config.model_config import AnyModelConfig
    from vaelab.models.interface import Autoencoder

Builder = Callable[..., "Autoencoder"]
BuilderT = TypeVar("BuilderT", bound=Builder)

ARCHITECTURES: dict[str, Builder] = {}


def register(name: str) -> Callable[[BuilderT], BuilderT]:
    """Decorator adding a builder to :data:`ARCHITECTURES` under ``name``."""

    def add(builder: BuilderT) -> BuilderT:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        ARCHITECTURES[name] = builder
        return builder

    return add


def build_model(config: AnyModelConfig, *, image_size: int, channels: int) -> Autoencoder:
    """Build the model a ``models:`` entry describes, for
    ``channels``×``image_size``×``image_size`` images."""
    try:
        builder = ARCHITECTURES[config.arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {config.arch!r}; known: {known}") from None
    return builder(config, image_size=image_size, channels=channels)


def loss_settings_from(config: Any) -> LossSettings:
    """The loss fields of a config entry; plain-AE entries have no KL fields and get defaults."""
    defaults = LossSettings()
    return LossSettings(
        recon_loss=config.recon_loss,
        sigma=config.sigma,
        sigma_lr=config.sigma_lr,
        recon_weight=config.recon_weight,
        msssim_weight=config.msssim_weight,
        ffl_weight=config.ffl_weight,
        ffl_alpha=config.ffl_alpha,
        kl_weight=getattr(config, "kl_weight", defaults.kl_weight),
        kl_warmup_epochs=getattr(config, "kl_warmup_epochs", defaults.kl_warmup_epochs),
        free_bits=getattr(config, "free_bits", defaults.free_bits),
        mmd_weight=getattr(config, "mmd_weight", defaults.mmd_weight),
        latent_norm_weight=getattr(config, "latent_norm_weight", defaults.latent_norm_weight),
        decoder_reg=getattr(config, "decoder_reg", defaults.decoder_reg),
        decoder_reg_weight=getattr(config, "decoder_reg_weight", defaults.decoder_reg_weight),
    )
