"""A trained variant of ``params.models`` on the device ``evaluate.device`` names."""

from __future__ import annotations

from pathlib import Path

from vaelab.config import Params
from vaelab.errors import UserError
from vaelab.models import Autoencoder
from vaelab.models.saved import SavedConfig, load_trained, require_saved
from vaelab.runtime import select_runtime


def load_variant(params: Params, variant: str, models_root: Path) -> tuple[Autoencoder, SavedConfig]:
    """``models_root/<variant>/`` rebuilt, in eval mode on the evaluation device."""
    if variant not in params.models:
        raise UserError(f"variant '{variant}' is not in params.yaml models: ({', '.join(params.models)})")
    folder = models_root / variant
    require_saved(folder, variant)
    model, config = load_trained(folder)
    device = select_runtime(params.evaluate.device, key="evaluate").device
    return model.to(device).eval(), config
