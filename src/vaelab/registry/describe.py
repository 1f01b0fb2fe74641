"""The descriptions the MLflow UI shows for a registered model and its versions (Markdown).

A version's description says what it is: the architecture and its knobs, the data it was
trained on, its headline metrics and the fingerprint of what they were measured on, and
where it came from (git commit, DVC experiment).
The registered model's description is its champion's (else its newest version's), under
one line naming the variant, so the model list reads "what serving gets".
"""

from __future__ import annotations

from vaelab.models.saved import SavedConfig
from vaelab.tracking import Provenance

# The numbers a person looks at first (those present in the evaluation), then registry.metric.
HEADLINE = (
    "recon.mse",
    "recon.psnr",
    "recon.ssim",
    "blur.laplacian_var.recon",
    "blur.laplacian_var.sample",
    "latent.active_units",
    "elbo",
)


def architecture(config: SavedConfig) -> str:
    knobs = config.model.model_dump(mode="json", exclude_defaults=True)
    knobs.pop("arch", None)
    shown = ", ".join(f"{key} {value}" for key, value in sorted(knobs.items()))
    return (
        f"{config.model.arch}"
        + (f" ({shown})" if shown else "")
        + f", {config.trainable_params:,} parameters"
    )


def data(config: SavedConfig) -> str:
    colour = "grey" if config.channels == 1 else f"{config.channels} channels"
    crop = config.data.crop.method
    train = config.train
    return (
        f"{config.data.dataset}, {config.image_size}x{config.image_size} {colour} (crop {crop}, "
        f"resample {config.data.resample}); {_count(train.epochs, 'epoch')}, batch {train.batch_size}, "
        f"lr {train.lr:g}; seed {config.seed} of {_count(train.seeds, 'replicate')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def headline(metrics: dict[str, float], metric: str) -> str:
    keys = [key for key in HEADLINE if key in metrics] + (
        [metric] if metric not in HEADLINE else []
    )
    return ", ".join(f"{key} {metrics[key]:.4g}" for key in keys if key in metrics)


def version_description(
    config: SavedConfig,
    metrics: dict[str, float],
    metric: str,
    provenance: Provenance,
    model_md5: str,
    fingerprint: str | None = None,
) -> str:
    """A new version's description (``fingerprint``: the id of the data and evaluation its metrics are of)."""
    origin = f"git {provenance.commit[:12]}" + (" (dirty tree)" if provenance.dirty else "")
    if provenance.experiment:
        origin += f", DVC experiment `{provenance.experiment}`"
    evaluated = "" if fingerprint is None else f"; data and evaluation fingerprint `{fingerprint}`"
    return "\n\n".join(
        [
            f"**{config.variant}**: {architecture(config)}.",
            f"Data: {data(config)}.",
            f"Evaluation (mean over seeds, test split): {headline(metrics, metric)}{evaluated}.",
            f"Weights md5 {model_md5}; registered from {origin}.",
        ]
    )


def model_description(variant: str, version: int, alias: str, version_text: str) -> str:
    """The registered model's description: the version behind ``alias`` (champion, else latest)."""
    return f"vaelab variant `{variant}`; `@{alias}` is version {version}:\n\n{version_text}"
