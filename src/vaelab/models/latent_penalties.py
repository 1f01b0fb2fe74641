"""The penalties that make a deterministic autoencoder a generative model (issue 14, remedy 5).

WAE-MMD (Tolstikhin, Bousquet, Gelly and Schölkopf 2018, "Wasserstein Auto-Encoders"): the
reconstruction plus λ times the MMD between the batch's codes and as many draws of the prior
N(0, I) (:func:`mmd_imq`), so that the codes, pooled over the data, match the prior the
sampler draws from, while each image keeps a code of its own (no noise, unlike a VAE).

RAE (Ghosh, Sajjadi, Vergari, Black and Schölkopf 2020, "From Variational to Deterministic
Autoencoders"): the reconstruction plus β ½‖z‖² (:func:`latent_norm`), which keeps the codes
in a bounded region, plus λ times a decoder regulariser, which keeps the decoder smooth where a
VAE's noise would have: ``l2``, ‖θ‖² of the decoder's parameters (:func:`decoder_l2`; with Adam,
the gradient of λ‖θ‖² is that of ``weight_decay = 2λ`` on the decoder), or ``gp``, the gradient
penalty ‖∇_z Σ D(z)‖² at the batch's codes (:func:`decoder_gradient_penalty`). An RAE is sampled
through a density fitted to its codes after training (:mod:`vaelab.models.latent_gmm`).

:func:`penalty_terms` gives a model's loss the terms its :class:`LossSettings` turns on, named
``mmd``, ``latent_norm`` and ``decoder_reg`` (unweighted); :func:`weighted_penalty` their
weighted sum, which the model adds to ``loss``. All are float32 scalars, batch means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from vaelab.models.losses import LossSettings

# In eval mode (validation losses) the prior draws of the MMD come from a generator of their own
# with this seed: a validation loss is then a function of the batch, and validating takes no
# numbers from the training's random stream.
EVAL_PRIOR_SEED = 0


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``(n, d)`` and ``(m, d)`` → ``(n, m)``: ‖x_i − y_j‖², from the differences (exact, and
    differentiable at x_i = y_j, unlike ``cdist``'s norm)."""
    return (x[:, None, :] - y[None, :, :]).square().sum(dim=-1)


def imq_kernel(x: Tensor, y: Tensor, scale: float) -> Tensor:
    """The inverse multiquadratic kernel ``C / (C + ‖x_i − y_j‖²)`` with ``C = scale``:
    ``(n, m)``."""
    return scale / (scale + squared_distances(x, y))


def mmd_imq(
    codes: Tensor, prior: Tensor, *, sigma_z: float = 1.0, scales: Sequence[float] = (1.0,)
) -> Tensor:
    """The unbiased U-statistic of MMD² between ``codes`` ``(n, ...)`` and ``prior`` draws
    ``(m, ...)`` (both flattened to ``d`` values), with the IMQ kernel of ``C = 2 d σ_z²`` (the WAE
    paper's choice for a N(0, σ_z² I) prior), summed over ``C × scales`` (the WAE code sums over
    ``(.1, .2, .5, 1, 2, 5, 10)``; one scale, the paper's, is the default)::

        1/(n(n−1)) Σ_{i≠j} k(z_i, z_j) + 1/(m(m−1)) Σ_{i≠j} k(p_i, p_j) − 2/(nm) Σ_{i,j} k(z_i, p_j)

    A float32 scalar; it can come out slightly negative (it is unbiased). Needs n, m ≥ 2.
    """
    n, m = len(codes), len(prior)
    if n < 2 or m < 2:
        raise ValueError(
            f"the MMD's U-statistic needs at least 2 codes and 2 prior draws, got {n} and {m}"
        )
    codes, prior = codes.flatten(1).float(), prior.flatten(1).float()
    if codes.shape[1] != prior.shape[1]:
        raise ValueError(
            f"codes of {codes.shape[1]} values against prior draws of {prior.shape[1]}"
        )
    base = 2.0 * codes.shape[1] * sigma_z**2
    total = codes.new_zeros(())
    for scale in scales:
        c = base * scale
        within_codes, within_prior = imq_kernel(codes, codes, c), imq_kernel(prior, prior, c)
        # The diagonals (k(x, x) = 1) are left out of the within-set means.
        total = total + (within_codes.sum() - within_codes.diagonal().sum()) / (n * (n - 1))
        total = total + (within_prior.sum() - within_prior.diagonal().sum()) / (m * (m - 1))
        total = total - 2.0 * imq_kernel(codes, prior, c).sum() / (n * m)
    return total


def prior_like(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """As many draws of N(0, I) as ``z`` has codes, float32 on its device; from ``generator`` (a
    CPU one) when given, else from the device's global stream."""
    if generator is None:
        return torch.randn(z.shape, device=z.device)
    return torch.randn(z.shape, generator=generator).to(z.device)


def latent_norm(z: Tensor) -> Tensor:
    """RAE's ``½‖z‖²`` per code, averaged over the batch: a float32 scalar."""
    return 0.5 * z.float().flatten(1).square().sum(dim=1).mean()


def decoder_l2(decoder: nn.Module) -> Tensor:
    """``‖θ‖²``: the squared values of every parameter of ``decoder``, summed (float32)."""
    return torch.stack(
        [parameter.float().square().sum() for parameter in decoder.parameters()]
    ).sum()


def decoder_gradient_penalty(
    decode: Callable[[Tensor], Tensor], z: Tensor, images: Tensor | None = None
) -> Tensor:
    """``‖∇_z Σ D(z)‖²`` per code (the gradient of the decoded image's pixel sum with respect to
    its code, as the RAE and Pythae implementations compute it), averaged over the batch.

    ``images``: ``decode(z)`` from the caller's forward pass, reused when ``z`` is in its graph
    (training). Otherwise (evaluation under ``no_grad``) the decoder runs again on a detached
    ``z``. The penalty can itself be differentiated when gradients are on (``create_graph``).
    """
    differentiable = torch.is_grad_enabled()
    with torch.enable_grad():
        if images is None or not z.requires_grad or images.grad_fn is None:
            z = z.detach().requires_grad_(True)
            images = decode(z)
        (gradient,) = torch.autograd.grad(images.float().sum(), z, create_graph=differentiable)
    return gradient.float().flatten(1).square().sum(dim=1).mean()


def penalty_terms(
    settings: LossSettings,
    z: Tensor,
    images: Tensor,
    *,
    decoder: nn.Module,
    decode: Callable[[Tensor], Tensor],
    training: bool,
) -> dict[str, Tensor]:
    """The penalties ``settings`` turns on, unweighted: ``mmd`` (the codes ``z`` against as many
    prior draws; 0 for a batch of one, which has no pairs), ``latent_norm``, ``decoder_reg``.
    ``images``: the decoded ``z`` (the forward pass's ``recon``). Empty when all are off."""
    terms: dict[str, Tensor] = {}
    if settings.mmd_weight > 0:
        generator = None if training else torch.Generator().manual_seed(EVAL_PRIOR_SEED)
        terms["mmd"] = (
            mmd_imq(z, prior_like(z.flatten(1), generator))
            if len(z) >= 2
            else torch.zeros((), device=z.device)
        )
    if settings.latent_norm_weight > 0:
        terms["latent_norm"] = latent_norm(z)
    if settings.decoder_reg == "l2":
        terms["decoder_reg"] = decoder_l2(decoder)
    elif settings.decoder_reg == "gp":
        terms["decoder_reg"] = decoder_gradient_penalty(decode, z, images)
    return terms


def weighted_penalty(settings: LossSettings, terms: dict[str, Tensor]) -> Tensor:
    """``λ mmd + β latent_norm + λ_D decoder_reg`` over the terms :func:`penalty_terms` gave."""
    weights = {
        "mmd": settings.mmd_weight,
        "latent_norm": settings.latent_norm_weight,
        "decoder_reg": settings.decoder_reg_weight,
    }
    return torch.stack([weights[name] * value for name, value in terms.items()]).sum()
