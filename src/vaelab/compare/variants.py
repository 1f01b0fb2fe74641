"""One variant as ``compare`` reads it: what evaluate measured and what training recorded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.compare.claims import Evaluated
from vaelab.config import Params
from vaelab.errors import UserError
from vaelab.io.json_files import read_json
from vaelab.io.metric_files import lookup, metric_files
from vaelab.models import Autoencoder
from vaelab.stats.intervals import Estimate


@dataclass(frozen=True)
class Variant:
    """One variant as compare reads it: what evaluate measured and what training recorded."""

    evaluated: Evaluated
    evaluation: dict[str, Any]
    training: dict[str, Any]

    @property
    def name(self) -> str:
        """The variant's key in ``models:``."""
        return self.evaluated.name

    def value(self, key: str) -> float | None:
        """The mean over seeds of a dotted eval key, None when the variant has no such metric."""
        return _lookup(self.evaluation, key)

    def sd(self, key: str) -> float | None:
        """Its standard deviation over seeds, None likewise."""
        return _lookup(self.evaluation.get("sd", {}), key)


def _lookup(tree: dict[str, Any], key: str) -> float | None:
    value = lookup(tree, key)
    return None if value is None else float(value)


def read_records(name: str, metrics_root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The detail of ``evaluate@<name>`` and of ``train@<name>`` (with its timing), or a UserError
    saying what to run."""
    evaluated, trained = (
        metric_files(metrics_root, f"eval/{name}.json"),
        metric_files(metrics_root, f"train/{name}.json"),
    )
    evaluation = read_json(evaluated.detail, f"run `dvc repro evaluate@{name}` first")
    training = read_json(trained.detail, f"run `dvc repro train@{name}` first")
    if trained.timing.is_file():
        training |= read_json(trained.timing, f"run `dvc repro train@{name}` first")
    if "intervals" not in evaluation:
        raise UserError(
            f"{evaluated.detail}: made by an older vaelab (no intervals); "
            f"rerun `dvc repro evaluate@{name}`"
        )
    return evaluation, training


def as_variant(
    params: Params,
    name: str,
    model: Autoencoder,
    evaluation: dict[str, Any],
    training: dict[str, Any],
) -> Variant:
    """The variant ``name`` from its model and its evaluate and train records."""
    estimates = {key: Estimate(**entry) for key, entry in evaluation["intervals"].items()}
    evaluated = Evaluated(
        name, params.models[name], model.is_variational, model.latent_dim, estimates
    )
    return Variant(evaluated, evaluation, training)
