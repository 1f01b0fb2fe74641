"""The ``registry:`` section of params.yaml: how ``register`` names and ranks model versions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vaelab.config.section import Section


class RegistryConfig(Section):
    # Registered model names are "<prefix>-<variant>", e.g. vaelab-vae.
    prefix: str = Field("vaelab", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # The evaluation metric (a dotted key of metrics/detail/eval/<variant>.json) that decides
    # the champion.
    metric: str = "recon.mse"
    mode: Literal["min", "max"] = "min"
    # The one patience of everything that talks to a tracking server (train, register, promote;
    # vaelab/tracking_http.py): attempts to reach it before the stage gives up, the first wait
    # between them, and seconds per HTTP request; MLflow's own MLFLOW_HTTP_REQUEST_* are set
    # from them.
    retries: int = Field(3, ge=1)
    backoff: float = Field(1.0, ge=0.0)
    timeout: float = Field(10.0, gt=0.0)  # seconds per HTTP request to a remote server
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
