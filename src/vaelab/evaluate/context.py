"""What every evaluate experiment is given: the model, the test split, the settings, and the
quantities several experiments share, each computed once on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.config import Params
from vaelab.config.evaluate_config import EvaluateConfig
from vaelab.data.prepared_data import PreparedData, load_prepared
from vaelab.errors import UserError
from vaelab.evaluate.forward_pass import (
    ForwardPass,
    InputMeasures,
    measure_inputs,
    run_forward_pass,
)
from vaelab.evaluate.latent_measures import PixelSpread, active_dims
from vaelab.models import Autoencoder
from vaelab.models.inference import model_device
from vaelab.models.latent_gmm import LatentGMM, sample_images
from vaelab.models.replicates import load_replicates
from vaelab.models.saved import check_fits

# The metric-key source of each evaluate.sampler's samples (`blur.<metric>.<source>`,
# `spread.<source>`).
SAMPLE_SOURCES = {"normal": "sample", "gmm": "sample_gmm"}


class SharedInputs:
    """The test split's own measures, made on first use and shared by every replicate's Context
    (they do not depend on the model: measuring them once per stage, not once per seed)."""

    def __init__(self, test: np.ndarray, batch_size: int) -> None:
        self.test, self.batch_size = test, batch_size
        self._measured: dict[torch.device, InputMeasures] = {}

    def measures(self, device: torch.device) -> InputMeasures:
        """The test split's measures, made on ``device`` the first time it is asked for."""
        if device not in self._measured:
            self._measured[device] = measure_inputs(
                self.test, batch_size=self.batch_size, device=device
            )
        return self._measured[device]


@dataclass(frozen=True, eq=False)
class Context:
    """One trained replicate of a variant and the data it is evaluated on.

        ``test``: the test split, ``(N, H, W, C)`` uint8; ``data``: every prepared image and the
        index (for the out-of-distribution split and the attribute groups); ``seed``: params.seed,
        from which every experiment seeds its own generator (the same draws for every replicate,
        so replicates are compared on equal terms); ``replicate``: the training seed of
        ``model``; ``draw``: whether experiments draw their figures (every replicate draws its
    own, titled with its seed);
        ``gmm``: the ex-post GMM saved with the model, if any.
    """

    model: Autoencoder
    variant: str
    data: PreparedData
    test: np.ndarray
    settings: EvaluateConfig
    seed: int
    replicate: int = 0
    draw: bool = True
    progress: bool = False
    # The test images' own measures, shared with the other replicates; None = measured in the pass.
    inputs: SharedInputs | None = None
    gmm: LatentGMM | None = None

    @property
    def batch_size(self) -> int:
        """``evaluate.batch_size``."""
        return self.settings.batch_size

    @cached_property
    def test_pass(self) -> ForwardPass:
        """The one forward pass over the test split (ELBO draws seeded with ``seed``)."""
        # The figures show the first `show` reconstructions; sharpening measures the first
        # `sharpen.images`.
        keep = max(self.settings.show, self.settings.sharpen.images)
        inputs = None if self.inputs is None else self.inputs.measures(model_device(self.model))
        return run_forward_pass(
            self.model,
            self.test,
            batch_size=self.batch_size,
            keep=keep,
            seed=self.seed,
            progress=self.progress,
            inputs=inputs,
        )

    @cached_property
    def samples(self) -> Tensor:
        """``(settings.samples, C, H, W)`` float32 decodings of z ~ N(0, I) on the model's
        device."""
        return self.model.sample(
            self.settings.samples, generator=torch.Generator().manual_seed(self.seed)
        ).float()

    @cached_property
    def gmm_samples(self) -> Tensor:
        """``(settings.samples, C, H, W)`` float32 decodings of draws of the model's ex-post GMM."""
        if self.gmm is None:
            raise ValueError(
                f"{self.variant} (seed {self.replicate}) was saved without a latent GMM"
            )
        return sample_images(
            self.model, self.gmm, self.settings.samples, torch.Generator().manual_seed(self.seed)
        ).float()

    @property
    def sampled(self) -> dict[str, Tensor]:
        """The samples of each ``settings.sampler`` this replicate has, by source
        (:data:`SAMPLE_SOURCES`): ``"sample"`` (N(0, I)) and, for a model saved with a GMM,
        ``"sample_gmm"``."""
        drawn = {"normal": lambda: self.samples, "gmm": lambda: self.gmm_samples}
        return {
            SAMPLE_SOURCES[name]: drawn[name]()
            for name in self.settings.sampler
            if name != "gmm" or self.gmm is not None
        }

    @cached_property
    def spreads(self) -> dict[str, float]:
        """PixelSpread.spread() of the test images, their reconstructions and the samples:
        ``"input"``, ``"recon"``, ``"sample"`` (and ``"sample_gmm"``: :attr:`sampled`)."""
        spreads = dict(self.test_pass.spread)
        for source, images in self.sampled.items():
            samples = PixelSpread()
            samples.add(images)
            spreads[source] = samples.spread()
        return spreads

    @cached_property
    def active(self) -> Tensor:
        """VAEs: which latent dimensions are active on the test split, ``(z_dim,)`` bool."""
        return active_dims(self.test_pass.codes, self.settings.active_threshold)

    @property
    def shown(self) -> np.ndarray:
        """The test images the figures show: ``(show, H, W, C)`` uint8 (fewer if the split is
        smaller)."""
        return self.test[: self.settings.show]

    @property
    def shown_recons(self) -> Tensor:
        """Their reconstructions: ``(show, C, H, W)`` float32 on the model's device."""
        return self.test_pass.first_recons[: self.settings.show]


def build_contexts(
    params: Params, variant: str, *, prepared: Path, models_root: Path, progress: bool
) -> list[Context]:
    """One Context per replicate of ``models_root/<variant>`` (by seed), on the prepared data in
    ``prepared``, checked to fit each other; only the first draws figures."""
    loaded = load_replicates(params, variant, models_root)
    data = load_prepared(prepared)
    for replicate in loaded:
        check_fits(replicate.config, data.images, f"models/{variant}/seed{replicate.seed}")
    test = data.split("test")
    if len(test) < 2:
        raise UserError(
            f"{prepared}: the test split has {len(test)} image(s); "
            "evaluation needs at least 2 (data.split.test)"
        )
    inputs = SharedInputs(test, params.evaluate.batch_size)
    return [
        Context(
            model=r.model,
            variant=variant,
            data=data,
            test=test,
            settings=params.evaluate,
            seed=params.seed,
            replicate=r.seed,
            draw=True,
            progress=progress,
            inputs=inputs,
            gmm=r.gmm,
        )
        for r in loaded
    ]
