"""What a VAE's latent code does: the ELBO and its terms, KL per dimension, active units,
and whether the decoder ignores z (posterior collapse, study 002's symptom)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaelab.models import VariationalAutoencoder
from vaelab.models.layers import gaussian_sample
from vaelab.models.losses import kl_per_dim, reconstruction_error


@torch.no_grad()
def elbo_terms(
    model: VariationalAutoencoder,
    x: Tensor,
    generator: torch.Generator,
    codes: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """One-sample ELBO of each image of ``x`` ``(B, C, H, W)``; ``codes`` (``mu``, ``logvar``
    from a forward pass already made on ``x``) spares a second run of the encoder.

    Returns ``recon`` (B,) — the decoder's negative log-likelihood of ``x`` at one draw
    z ~ q(z|x) (nats for a Bernoulli or Gaussian decoder; ``sigma: optimal`` takes σ from
    this batch's error), ``kl`` (B,) and ``kl_per_dim`` (B, z_dim)
    — KL(q(z|x) || N(0, I)), and ``elbo`` (B,) = -(recon + kl). ``generator`` fixes
    the draw so reruns give the same numbers; a CPU one serves a model on any device.
    """
    codes = codes if codes is not None else model.encode(x)
    mu, logvar = codes["mu"].float(), codes["logvar"].float()
    logits = model.decode_logits(gaussian_sample(mu, logvar, generator))
    recon_images = torch.sigmoid(logits)
    log_sigma = model.decoder_log_sigma(recon_images, x)
    recon = reconstruction_error(logits, recon_images, x, model.loss_settings.recon_loss, log_sigma)
    per_dim = kl_per_dim(mu, logvar)
    kl = per_dim.sum(dim=1)
    return {"recon": recon, "kl": kl, "kl_per_dim": per_dim, "elbo": -(recon + kl)}


class PixelSpread:
    """How much a set of images differs from image to image, accumulated batch by batch.

    ``spread()`` is the per-pixel standard deviation across the images, averaged over
    pixels: 0 when every image is the same.
    """

    def __init__(self) -> None:
        self.count = 0
        self.total: Tensor | None = None
        self.squares: Tensor | None = None

    def add(self, images: Tensor) -> None:
        """Add ``(B, C, H, W)`` images."""
        flat = images.detach().flatten(1).double()
        if self.total is None or self.squares is None:
            self.total, self.squares = flat.sum(dim=0), flat.square().sum(dim=0)
        else:
            self.total += flat.sum(dim=0)
            self.squares += flat.square().sum(dim=0)
        self.count += len(flat)

    def spread(self) -> float:
        """The per-pixel standard deviation across the images added, averaged over pixels."""
        if self.total is None or self.squares is None or self.count < 2:
            raise ValueError("the spread needs at least two images")
        mean = self.total / self.count
        variance = (self.squares / self.count - mean.square()).clamp(min=0.0)
        return float(variance.sqrt().mean())


def active_dims(mu: Tensor, threshold: float) -> Tensor:
    """Which dimensions of ``(N, D)`` encoder means vary over the data: ``(D,)`` bool,
    Var[mu_d] > threshold (Burda et al.'s active units; their count is ``.sum()``)."""
    return mu.double().var(dim=0, unbiased=False) > threshold


def collapse_verdict(
    recon_ratio: float, sample_ratio: float, threshold: float, *, active: int, dims: int
) -> tuple[bool, str]:
    """Say in words whether the decoder ignores z.

    ``recon_ratio``: spread of the reconstructions of different test images over the
    spread of the images; ``sample_ratio``: the same for decodings of different prior draws;
    ``active``: latent dimensions whose encoder mean varies over the test split, of ``dims``.
    No active dimension is collapse whatever the spread (the code carries nothing of the
    input); so is a spread of reconstructions below ``threshold``.
    """
    share = (
        f"reconstructions of different test images vary {recon_ratio:.0%} as much as the "
        f"images do (prior draws: {sample_ratio:.0%})"
    )
    units = f"{active} of {dims} latent dimensions active"
    if active == 0:
        return True, (
            f"posterior collapse: {units}, so the code carries nothing of the input and the "
            f"decoder ignores z; {share} (study 002's symptom)."
        )
    if recon_ratio < threshold:
        return True, (
            f"posterior collapse: {units}, but {share}, below the {threshold:.0%} threshold: "
            "nearly the same output for every input (study 002's symptom)."
        )
    return False, f"the decoder uses z: {units}; {share}."
