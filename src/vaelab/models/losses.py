"""Loss terms shared by every model: reconstruction, KL to N(0, I), warm-up and free bits.

Conventions: images are ``(B, C, H, W)`` in [0, 1]; a reconstruction term is summed
over the pixels of each image and averaged over the batch (so its scale, and hence
the balance against the KL term, does not change with the batch size); the KL term is
summed over latent dimensions and averaged over the batch.

The Gaussian decoder is the σ-VAE's (Rybkin, Daniilidis and Levine 2021, "Simple and
effective VAE training with calibrated decoders"; github.com/orybkin/sigma-vae-pytorch):
its negative log-likelihood is *summed* over pixels like the BCE's, so the ELBO is in
nats for both; the reference README warns that a per-pixel mean "works very poorly".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vaelab.config.model_config import DecoderSigma, ReconLoss
from vaelab.config.penalties import DecoderReg

# The soft lower bound of a learned or optimal log σ (the σ-VAE's): a decoder that
# reproduces a batch exactly would otherwise drive log σ, and the loss, to −∞.
LOG_SIGMA_FLOOR = -6.0


@dataclass(frozen=True)
class LossSettings:
    """The loss knobs a model carries: the loss fields of its params entry, whose pydantic
    model has already checked their ranges."""

    recon_loss: ReconLoss = "bce"
    sigma: DecoderSigma = "learned"
    sigma_lr: float | None = 0.02  # the learned log σ's own learning rate (None: the model's)
    recon_weight: float = 1.0
    kl_weight: float = 1.0
    kl_warmup_epochs: int = 0
    free_bits: float = 0.0
    # Structural and frequency terms (vaelab.models.image_losses), off at 0.
    msssim_weight: float = 0.0
    ffl_weight: float = 0.0
    ffl_alpha: float = 1.0
    # A deterministic autoencoder's penalties (vaelab.models.latent_penalties); 0 and none are off.
    mmd_weight: float = 0.0
    latent_norm_weight: float = 0.0
    decoder_reg: DecoderReg = "none"
    decoder_reg_weight: float = 1.0


def reconstruction_loss(
    logits: Tensor, recon: Tensor, target: Tensor, kind: ReconLoss, log_sigma: Tensor | None = None
) -> Tensor:
    """Per-image summed reconstruction error, averaged over the batch: a scalar."""
    return reconstruction_error(logits, recon, target, kind, log_sigma).mean()


def reconstruction_error(
    logits: Tensor, recon: Tensor, target: Tensor, kind: ReconLoss, log_sigma: Tensor | None = None
) -> Tensor:
    """Reconstruction error summed over the pixels of each image: ``(B,)`` (the negative
    log-likelihood in nats for ``bce`` and ``gaussian``, the summed squared error for ``mse``).

    ``logits`` and ``recon = sigmoid(logits)`` are ``(B, C, H, W)``, ``target`` too.
    BCE is computed from the logits because ``log(sigmoid(·))`` saturates to ``-inf``
    in float32 once a pixel is confidently wrong; MSE and the Gaussian are on the [0, 1]
    images, the Gaussian with the 0-d ``log_sigma`` (:func:`decoder_log_sigma`).
    """
    # Under bf16/fp16 autocast the decoder's outputs arrive in half precision; sums over
    # thousands of pixels are done in float32 so the loss keeps its digits.
    logits, recon, target = logits.float(), recon.float(), target.float()
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "mse":
        per_pixel = (recon - target).square()
    elif kind == "gaussian":
        if log_sigma is None:
            raise ValueError(
                "the gaussian reconstruction loss needs the decoder's log σ (decoder_log_sigma)"
            )
        per_pixel = gaussian_nll(recon, target, log_sigma)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; use 'bce', 'mse' or 'gaussian'")
    return per_pixel.flatten(1).sum(dim=1)


def gaussian_nll(mean: Tensor, target: Tensor, log_sigma: Tensor) -> Tensor:
    """``-log N(target; mean, σ²)`` per pixel, in nats: ``0.5 ((x − x̂) / σ)² + log σ + 0.5 log 2π``.

    ``log_sigma`` broadcasts against ``mean`` (0-d: one σ for every pixel).
    """
    log_sigma = log_sigma.float()
    return (
        0.5 * (target - mean).square() * torch.exp(-2.0 * log_sigma)
        + log_sigma
        + 0.5 * math.log(2 * math.pi)
    )


def softclip(value: Tensor, low: float) -> Tensor:
    """``low + softplus(value − low)``: above ``low`` everywhere, ≈ ``value`` well above it
    (the σ-VAE's)."""
    return low + F.softplus(value - low)


def optimal_log_sigma(recon: Tensor, target: Tensor) -> Tensor:
    """The σ that maximises a batch's Gaussian likelihood, as a 0-d log σ soft-clipped at
    :data:`LOG_SIGMA_FLOOR`: ``log √mean((x − x̂)²)`` over every pixel of the batch.

    Computed from the detached error: at the optimum the loss's slope in σ is zero, so only
    the mean ``x̂`` is trained (an MSE scaled by 1 / σ²).
    """
    mean_square = (target.float() - recon.detach().float()).square().mean()
    return softclip(0.5 * torch.log(mean_square), LOG_SIGMA_FLOOR)


def decoder_log_sigma(
    sigma: DecoderSigma, recon: Tensor, target: Tensor, learned: Tensor | None = None
) -> Tensor:
    """The Gaussian decoder's 0-d log σ for a batch: ``learned`` (the model's log σ
    parameter) soft-clipped, the batch's :func:`optimal_log_sigma`, or ``log(sigma)`` as given."""
    if sigma == "learned":
        if learned is None:
            raise ValueError("sigma: learned needs the model's log σ parameter")
        return softclip(learned.float(), LOG_SIGMA_FLOOR)
    if sigma == "optimal":
        return optimal_log_sigma(recon, target)
    return torch.tensor(math.log(sigma), device=recon.device)


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per sample and dimension, ``(B, D) -> (B, D)``, in nats.

    Closed form: ``0.5 * (mu² + exp(logvar) - 1 - logvar)``, in float32 even under
    autocast (``exp`` and a sum over hundreds of dimensions lose too much in bf16).
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL to N(0, I) summed over latent dimensions and averaged over the batch: a scalar."""
    return kl_per_dim(mu, logvar).sum(dim=1).mean()


def free_bits_kl(mu: Tensor, logvar: Tensor, free_bits: float) -> Tensor:
    """KL with each dimension's batch-mean floored at ``free_bits`` nats, summed: a scalar.

    Averaging over the batch *before* the floor (Kingma et al. 2016) lets single
    samples go below the floor as long as the dimension carries information on
    average; a dimension under the floor gets no gradient pushing it to collapse further.
    """
    per_dim = kl_per_dim(mu, logvar).mean(dim=0)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def kl_weight_at(epoch: int, kl_weight: float, warmup_epochs: int) -> float:
    """KL weight at ``epoch`` (0-based): ``kl_weight * min(1, epoch / warmup_epochs)``.

    Starting at 0 lets the decoder learn to use ``z`` before the KL term pulls the
    posterior onto the prior (the posterior-collapse remedy study 002 was looking for).
    """
    if warmup_epochs <= 0:
        return kl_weight
    return kl_weight * min(1.0, max(epoch, 0) / warmup_epochs)


def as_tensor(value: float, like: Tensor) -> Tensor:
    """A 0-d tensor on the device and dtype of ``like``, so loss dicts hold tensors only."""
    return torch.tensor(value, device=like.device, dtype=like.dtype)
