"""What ``register`` reads from the pipeline's files, checked before MLflow is touched.

Per variant: its replicates in ``models/<variant>/`` (the first seed stands for the
variant in the registry), its evaluation (``metrics/detail/eval/<variant>.json``, the
whole evaluation, not the headline of ``metrics/eval/``), its history ``metrics/history/<variant>.csv`` and its figures
``reports/<variant>/``. A missing model or evaluation is a UserError, and so is an
evaluation without its ``evaluated_on`` record (written before fingerprints: evaluate
again); a missing history or figure folder only means there is less to log. The saved
config and ``evaluated_on`` make the variant's fingerprint (:mod:`.fingerprint`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.config.evaluated_on import EVALUATED_ON
from vaelab.config.registry import RegistryConfig
from vaelab.errors import UserError
from vaelab.io.json_files import flatten, read_json
from vaelab.io.metric_files import metric_files
from vaelab.models.saved import (
    SavedConfig,
    config_file,
    load_config,
    require_replicates,
    weights_md5,
)
from vaelab.registry.fingerprint import Fingerprint, of_evaluation


@dataclass(frozen=True)
class Replicate:
    """One trained seed of a variant."""

    seed: int
    folder: Path  # models/<variant>/seed<k>/
    model_md5: str


@dataclass(frozen=True)
class VariantInputs:
    """Everything registration needs from one variant's files, read before any write."""

    variant: str
    name: str  # the registered model name, <prefix>-<variant>
    folder: Path  # the replicate that stands for the variant (the first seed)
    config: SavedConfig
    model_md5: str
    metrics: dict[str, float]  # numeric leaves of the evaluation, "recon.mse": 0.01
    fingerprint: Fingerprint  # what the variant was trained and evaluated on
    eval_path: Path
    replicates: tuple[Replicate, ...]
    history_path: Path  # may not exist
    figures_dir: Path  # may not exist


def numeric_leaves(payload: dict[str, Any]) -> dict[str, float]:
    """Nested metrics → ``{"recon.mse": 0.01, ...}``; strings, lists, booleans and nulls dropped."""
    return {
        key: float(value)
        for key, value in flatten(payload, keep_empty=False).items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def eval_file(metrics_root: Path, variant: str) -> Path:
    """The variant's full evaluation, ``metrics/detail/eval/<variant>.json``."""
    return metric_files(metrics_root, f"eval/{variant}.json").detail


def _evaluated_on(payload: dict[str, Any], eval_path: Path, variant: str) -> dict[str, Any]:
    record = payload.get(EVALUATED_ON)
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("test_md5"), str)
        or not isinstance(record.get("settings"), dict)
    ):
        raise UserError(
            f"{eval_path}: no {EVALUATED_ON} record of the test split and settings (written by an older vaelab); "
            f"rerun `dvc repro evaluate@{variant}`"
        )
    return record


def read_variant(
    variant: str, cfg: RegistryConfig, models_root: Path, metrics_root: Path, reports_root: Path
) -> VariantInputs:
    """Check and read one variant's model folder and evaluation; UserError if unusable."""
    try:
        found = require_replicates(models_root / variant, variant)
    except UserError as err:
        raise UserError(
            f"{err} (register needs every variant in params.yaml models: trained)"
        ) from None
    eval_path = eval_file(metrics_root, variant)
    if not eval_path.is_file():
        raise UserError(f"{eval_path}: not found; run `dvc repro evaluate@{variant}` first")
    payload = read_json(eval_path, f"rerun `dvc repro evaluate@{variant}`")
    if not isinstance(payload, dict):
        raise UserError(
            f"{eval_path}: expected a JSON object of metrics; rerun `dvc repro evaluate@{variant}`"
        )
    metrics = numeric_leaves({key: value for key, value in payload.items() if key != EVALUATED_ON})
    if cfg.metric not in metrics:
        raise UserError(
            f"{eval_path}: no numeric {cfg.metric!r}, the metric registry.metric ranks champions by; "
            f"set registry.metric in params.yaml to one of: {', '.join(sorted(metrics)) or '(none found)'}"
        )
    evaluated_on = _evaluated_on(payload, eval_path, variant)
    replicates = tuple(Replicate(seed, folder, weights_md5(folder)) for seed, folder in found)
    first = replicates[0]
    config = load_config(config_file(first.folder))
    return VariantInputs(
        variant=variant,
        name=f"{cfg.prefix}-{variant}",
        folder=first.folder,
        config=config,
        model_md5=first.model_md5,
        metrics=metrics,
        fingerprint=of_evaluation(config, evaluated_on),
        eval_path=eval_path,
        replicates=replicates,
        history_path=metrics_root / "history" / f"{variant}.csv",
        figures_dir=reports_root / variant,
    )
