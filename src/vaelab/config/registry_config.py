"""The ``registry:`` section of params.yaml: how ``register`` names and ranks model versions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vaelab.config.section import Section


class RegistryConfig(Section):
    """The ``registry:`` section: model names, the champion's metric, a tracking server's
    patience."""

    prefix: str = Field(
        "vaelab",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description='Registered model names are "<prefix>-<variant>", e.g. vaelab-vae.',
    )
    metric: str = Field(
        "recon.mse",
        description="The evaluation metric (a dotted key of metrics/detail/eval/<variant>.json) "
        "that decides the champion.",
    )
    mode: Literal["min", "max"] = Field(
        "min", description="Whether a lower (min) or a higher (max) metric wins."
    )
    retries: int = Field(
        3,
        ge=1,
        description="Attempts to reach a tracking server before a stage gives up (train, "
        "register, promote; MLflow's MLFLOW_HTTP_REQUEST_* are set from these three).",
    )
    backoff: float = Field(
        1.0, ge=0.0, description="Seconds before the first retry; each later wait doubles."
    )
    timeout: float = Field(
        10.0, gt=0.0, description="Seconds per HTTP request to a remote tracking server."
    )
    max_images: int = Field(
        512,
        ge=1,
        description=(
            "The most images (or latents) one call handles: a request to a served model or "
            "its decoder (recorded as the logged model's model_config at register; "
            "SERVING_MODEL_CONFIG='{\"max_images\": N}' overrides it for `mlflow models "
            "serve`), `vaelab generate -n`, and `vaelab reconstruct`'s image files. More is "
            "refused with one message before the model runs; what is accepted runs 256 at a "
            "time. MLflow's scoring server still reads and parses a whole request first."
        ),
    )
