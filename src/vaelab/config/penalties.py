"""The knobs that make a deterministic ``vae_conv`` (``variational: false``) a generative
model: a penalty on its codes and one on its decoder (the math:
:mod:`vaelab.models.latent_penalties`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vaelab.config.section import Section

DecoderReg = Literal["none", "l2", "gp"]


class LatentPenaltyFields(Section):
    """What makes a deterministic autoencoder generate: a penalty on its codes, one on its decoder.

    WAE-MMD (Tolstikhin et al. 2018): ``mmd_weight`` λ times the MMD between the batch's codes
    and as many draws of N(0, I). RAE (Ghosh et al. 2020): ``latent_norm_weight`` β times
    ½‖z‖², plus ``decoder_reg_weight`` times ``decoder_reg``. 0 and none are off: the plain AE.
    """

    mmd_weight: float = Field(
        0.0,
        ge=0.0,
        description="WAE-MMD's λ: the MMD of the codes to N(0, I) (inverse multiquadratic "
        "kernel, unbiased U-statistic; the paper's λ: 10 on MNIST, 100 on CelebA). 0 = off.",
    )
    latent_norm_weight: float = Field(
        0.0, ge=0.0, description="RAE's β of ½‖z‖² per image, batch mean. 0 = off."
    )
    decoder_reg: DecoderReg = Field(
        "none",
        description="RAE's decoder regulariser: l2 (‖θ‖² over the decoder's parameters: weight "
        "decay) or gp (‖∇_z Σ D(z)‖² per image at the batch's codes: a gradient penalty).",
    )
    decoder_reg_weight: float = Field(
        1.0, gt=0.0, description="λ of decoder_reg (only with decoder_reg: l2 or gp)."
    )

    @model_validator(mode="after")
    def _decoder_reg_weight_needs_a_regulariser(self) -> LatentPenaltyFields:
        default = type(self).model_fields["decoder_reg_weight"].default
        if self.decoder_reg == "none" and self.decoder_reg_weight != default:
            raise ValueError(
                "decoder_reg_weight would do nothing with decoder_reg: none; remove it or set "
                "decoder_reg: l2 or gp"
            )
        return self

    def penalties_set(self) -> list[str]:
        """The keys of this entry that turn a penalty on."""
        on = {
            "mmd_weight": self.mmd_weight > 0,
            "latent_norm_weight": self.latent_norm_weight > 0,
            "decoder_reg": self.decoder_reg != "none",
        }
        return [name for name, is_on in on.items() if is_on]
