"""The model zoo: one :class:`Autoencoder` interface, an ``arch`` → builder table
(:mod:`.zoo`), summaries.

Importing the package registers every architecture (``ae``, ``vae``, ``vae_gan`` modules), so
``build_model(config, image_size=..., channels=...)`` works for any ``models:`` entry.
"""

from vaelab.models.interface import Autoencoder, VariationalAutoencoder
from vaelab.models.zoo import ARCHITECTURES, build_model, register

# Imported for their @register side effect; keep after the zoo import.
from vaelab.models import ae, vae, vae_gan  # noqa: F401  isort: skip
from vaelab.models.summary import ParamCounts, count_params, summarize

__all__ = [
    "ARCHITECTURES",
    "Autoencoder",
    "ParamCounts",
    "VariationalAutoencoder",
    "build_model",
    "count_params",
    "register",
    "summarize",
]
