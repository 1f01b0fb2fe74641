"""Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic
Autoencoders", section 4): after training, a Gaussian mixture fitted to the training codes,
so that any autoencoder (a plain AE, an RAE, a WAE or a VAE whose pooled codes do not match
N(0, I)) is sampled where its codes are, not where the prior would put them.

:func:`fit_latent_gmm` fits scikit-learn's ``GaussianMixture`` (full covariances, k-means
initialisation, seeded) to ``(N, D)`` codes; the result is a :class:`LatentGMM` of three plain
float64 tensors (weights, means, covariances), saved next to the weights by
:mod:`vaelab.models.saved` and loaded weights-only. Sampling (:meth:`LatentGMM.sample`) is
torch alone, from a ``torch.Generator``: loading and sampling never import scikit-learn.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from vaelab.models.interface import Autoencoder

log = logging.getLogger("vaelab.gmm")

STATE_KEYS = ("weights", "means", "covariances")


@dataclass(frozen=True, eq=False)
class LatentGMM:
    """A Gaussian mixture over flattened codes: ``weights`` ``(K,)`` (summing to 1), ``means``
    ``(K, D)`` and full ``covariances`` ``(K, D, D)``, float64 on the CPU."""

    weights: Tensor
    means: Tensor
    covariances: Tensor

    def __post_init__(self) -> None:
        k, d = self.means.shape if self.means.ndim == 2 else (-1, -1)
        tensors = (self.weights, self.means, self.covariances)
        if (
            self.weights.shape != (k,)
            or self.covariances.shape != (k, d, d)
            or k < 1
            or any(t.dtype != torch.float64 for t in tensors)
        ):
            raise ValueError(
                "a latent GMM is float64 weights (K,), means (K, D) and covariances (K, D, D); got "
                f"{[(tuple(t.shape), str(t.dtype)) for t in tensors]}"
            )
        if not torch.all(self.weights >= 0) or abs(float(self.weights.sum()) - 1.0) > 1e-6:
            raise ValueError(
                f"the mixture weights must be >= 0 and sum to 1, got {self.weights.tolist()}"
            )

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        """Values per code (the model's ``latent_dim``)."""
        return self.means.shape[1]

    def state_dict(self) -> dict[str, Tensor]:
        """The three tensors by name (what :mod:`vaelab.models.saved` writes)."""
        return {name: getattr(self, name) for name in STATE_KEYS}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> LatentGMM:
        if not isinstance(state, dict) or set(state) != set(STATE_KEYS):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"a latent GMM holds {', '.join(STATE_KEYS)}; got {found}")
        return cls(**{name: state[name] for name in STATE_KEYS})

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``(n, D)`` float64 on the CPU: a component by its weight, then its Gaussian,
        ``mean + L ε`` with ``L`` the Cholesky factor of its covariance; ``generator`` (a CPU one)
        makes them reproducible."""
        picks = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        scale = torch.linalg.cholesky(self.covariances)
        draws = torch.empty((n, self.dim), dtype=torch.float64)
        for component in range(self.components):
            rows = picks == component
            draws[rows] = self.means[component] + noise[rows] @ scale[component].T
        return draws


def fit_latent_gmm(codes: np.ndarray, components: int, seed: int) -> LatentGMM:
    """A mixture of ``min(components, N)`` full-covariance Gaussians fitted to ``(N, D)`` codes by
    scikit-learn's EM (k-means initialisation with ``seed``). Deterministic: OpenMP (k-means)
    runs on one thread here, as a reduction over several would add in a varying order."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(
            f"a latent GMM is fitted to (N, D) codes with N >= 2, got shape {codes.shape}"
        )
    if not np.isfinite(codes).all():
        raise ValueError("the codes to fit a latent GMM to are not all finite")
    count = min(components, len(codes))
    if count < components:
        log.info(
            "%d codes: fitting %d mixture components instead of %d", len(codes), count, components
        )
    mixture = GaussianMixture(n_components=count, covariance_type="full", random_state=seed)
    with (
        threadpool_limits(limits=1, user_api="openmp"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always", ConvergenceWarning)
        mixture.fit(codes)
    for warning in caught:
        log.warning(
            "latent GMM (%d components, %d-d codes): %s", count, codes.shape[1], warning.message
        )
    return LatentGMM(
        *(
            torch.from_numpy(np.array(values, dtype=np.float64, order="C"))
            for values in (mixture.weights_, mixture.means_, mixture.covariances_)
        )
    )


@torch.no_grad()
def sample_images(
    model: Autoencoder, gmm: LatentGMM, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """Decode ``n`` draws of ``gmm``: ``(n, C, H, W)`` images in [0, 1] on the model's device, no
    gradients (the mixture's counterpart of :meth:`Autoencoder.sample`)."""
    if gmm.dim != model.latent_dim:
        raise ValueError(
            f"the GMM is over {gmm.dim}-value codes, the model's are {model.latent_dim}"
        )
    reference = next(model.parameters())
    z = gmm.sample(n, generator).reshape(n, *model.latent_shape)
    return model.decode(z.to(device=reference.device, dtype=reference.dtype))
