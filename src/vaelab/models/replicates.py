"""A trained variant of ``params.models``, each replicate on the device ``evaluate.device``
names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vaelab.config import Params
from vaelab.errors import UserError
from vaelab.models import Autoencoder
from vaelab.models.latent_gmm import LatentGMM
from vaelab.models.saved import SavedConfig, load_gmm, load_trained, require_replicates
from vaelab.runtime import select_runtime


@dataclass(frozen=True)
class Replicate:
    """One trained seed of a variant, ready to evaluate."""

    seed: int
    model: Autoencoder  # in eval mode, on the evaluation device
    config: SavedConfig
    gmm: LatentGMM | None = None  # the ex-post GMM saved with it, if any (on the CPU)


def load_replicates(
    params: Params, variant: str, models_root: Path, *, first_only: bool = False
) -> list[Replicate]:
    """Every replicate of ``models_root/<variant>/``, by seed (the first is ``params.seed``'s),
    or only the first with ``first_only``."""
    if variant not in params.models:
        raise UserError(
            f"variant '{variant}' is not in params.yaml models: ({', '.join(params.models)})"
        )
    device = select_runtime(params.evaluate.device, key="evaluate").device
    found = require_replicates(models_root / variant, variant)
    loaded = []
    for seed, folder in found[:1] if first_only else found:
        model, config = load_trained(folder)
        loaded.append(Replicate(seed, model.to(device).eval(), config, load_gmm(folder)))
    return loaded


def load_variant(
    params: Params, variant: str, models_root: Path
) -> tuple[Autoencoder, SavedConfig]:
    """The variant's first replicate (the one trained with ``params.seed``), in eval mode."""
    first = load_replicates(params, variant, models_root, first_only=True)[0]
    return first.model, first.config
