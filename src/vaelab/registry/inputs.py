"""What ``register`` reads from the pipeline's files, checked before MLflow is touched, and
the data and evaluation fingerprint made of it.

Per variant: its replicates in ``models/<variant>/`` (the first seed stands for the
variant in the registry), its evaluation (``metrics/detail/eval/<variant>.json``, the
whole evaluation, not the headline of ``metrics/eval/``: the numbers over seeds, and each
replicate's own under ``seeds``), its history ``metrics/history/<variant>.csv`` and its
figures ``reports/<variant>/seed<k>/``. A missing model
or evaluation is a UserError, and so is an evaluation without its ``evaluated_on`` record
(written before fingerprints: evaluate again); a missing history or figure folder only
means there is less to log.

The fingerprint says what a version's metrics were measured on. A metric ranks two
versions only when both were evaluated on the same data with the same settings. The
fingerprint's fields are read from what the variant was trained and evaluated on, not
from params: its saved ``config.json`` (dataset, image size, channels, resample, limit,
crop, split) and its evaluation's ``evaluated_on`` record (the md5 of the test split, the
evaluation settings: :mod:`vaelab.config.evaluated_on`). Its id is a short sha256 of the
fields as canonical JSON. A version carries both as tags (``fingerprint``,
``fingerprint.fields``).

Two versions are compared on a metric when their data fields and the evaluation settings
that can change that metric are equal (:meth:`Fingerprint.differences`): ``recon.mse``
depends on the test split alone, so a changed ``evaluate.samples`` changes the id but
keeps the versions comparable on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.config.data_config import CropConfig
from vaelab.config.evaluated_on import EVALUATED_ON, settings_changing
from vaelab.config.registry_config import RegistryConfig
from vaelab.errors import UserError
from vaelab.io.json_files import flatten, read_json
from vaelab.io.metric_files import OWN_EVALUATIONS, metric_files
from vaelab.models.saved import (
    SavedConfig,
    config_file,
    load_config,
    replicate_folder,
    require_replicates,
    weights_md5,
)

log = logging.getLogger("vaelab.registry")


# --------------------------------------------------------------------------- fingerprint

FINGERPRINT_TAG = "fingerprint"  # version tag: the id
FIELDS_TAG = "fingerprint.fields"  # version tag: the fields, canonical JSON
ID_LENGTH = 12
DATA_FIELDS = (
    "dataset",
    "image_size",
    "channels",
    "resample",
    "limit",
    "crop",
    "split",
    "test_md5",
)
SETTINGS = "evaluate"  # the fields' key of the evaluation settings
SHOWN_MD5 = 8  # hex digits of an md5 shown in a reason
NOT_RECORDED = "not recorded"
_MISSING = object()  # a field one of two fingerprints lacks
NO_FINGERPRINT = "registered before fingerprints (no fingerprint tag)"


def canonical(payload: Mapping[str, Any]) -> str:
    """One JSON text per content: sorted keys, no spaces."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def crop_fields(crop: CropConfig) -> dict[str, Any]:
    """The crop's method and the settings of that method only (the others change no pixel)."""
    dumped = crop.model_dump(mode="json")
    own = "size" if crop.method == "center" else crop.method
    return {"method": crop.method, **({own: dumped[own]} if own in dumped else {})}


def _shown(key: str, value: Any) -> str:
    if value is _MISSING:
        return NOT_RECORDED
    if key == "test_md5" and isinstance(value, str):
        return value[:SHOWN_MD5]
    return json.dumps(value)


@dataclass(frozen=True)
class Fingerprint:
    """The fields one evaluation of a version was measured on, JSON-ready."""

    fields: dict[str, Any]

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical(self.fields).encode()).hexdigest()[:ID_LENGTH]

    def tags(self) -> dict[str, str]:
        return {FINGERPRINT_TAG: self.id, FIELDS_TAG: canonical(self.fields)}

    def compared_on(self, metric: str, other: Fingerprint | None = None) -> list[str]:
        """The dotted fields that must match for ``metric`` to rank this version and ``other``."""
        recorded = set(self.fields.get(SETTINGS, {})) | set(
            () if other is None else other.fields.get(SETTINGS, {})
        )
        return [
            *DATA_FIELDS,
            *(f"{SETTINGS}.{name}" for name in settings_changing(metric, recorded)),
        ]

    def differences(self, other: Fingerprint, metric: str) -> list[str]:
        """What of ``other`` differs from this (the current) fingerprint where ``metric`` depends
        on it, in words: ``["image_size 7 (current 32)", ...]``; empty when the two compare on
        ``metric``."""
        mine, theirs = flatten(self.fields), flatten(other.fields)
        found = []
        for field in self.compared_on(metric, other):
            keys = sorted(
                {key for key in (*mine, *theirs) if key == field or key.startswith(field + ".")}
            ) or [field]
            for key in keys:
                current, then = mine.get(key, _MISSING), theirs.get(key, _MISSING)
                if current != then:
                    found.append(f"{key} {_shown(key, then)} (current {_shown(key, current)})")
        return found

    def summary(self, metric: str) -> dict[str, Any]:
        """What ``metrics/registry.json`` shows of it."""
        return {"id": self.id, "fields": self.fields, "compared_on": self.compared_on(metric)}


def of_evaluation(config: SavedConfig, evaluated_on: Mapping[str, Any]) -> Fingerprint:
    """The fingerprint of a variant trained with ``config`` and evaluated as ``evaluated_on``
    records."""
    data = config.data
    return Fingerprint(
        {
            "dataset": data.dataset,
            "image_size": config.image_size,
            "channels": config.channels,
            "resample": data.resample,
            "limit": data.limit,
            "crop": crop_fields(data.crop),
            "split": data.split.model_dump(mode="json"),
            "test_md5": evaluated_on["test_md5"],
            SETTINGS: dict(evaluated_on["settings"]),
        }
    )


@dataclass(frozen=True)
class Tagged:
    """A version's fingerprint as its tags hold it: the fingerprint, or why there is none."""

    fingerprint: Fingerprint | None
    missing: str | None = None  # why there is no fingerprint

    @property
    def id(self) -> str | None:
        return None if self.fingerprint is None else self.fingerprint.id


def of_tags(tags: Mapping[str, str], where: str) -> Tagged:
    """The fingerprint in a version's tags (``where`` names the version in a warning)."""
    raw = tags.get(FIELDS_TAG)
    if raw is None:
        return Tagged(None, NO_FINGERPRINT)
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as err:
        log.warning(
            "%s: tag %s is not JSON (%s); the version is not compared", where, FIELDS_TAG, err
        )
        return Tagged(None, f"its {FIELDS_TAG} tag is not JSON ({err})")
    if not isinstance(fields, dict):
        log.warning(
            "%s: tag %s is not a JSON object; the version is not compared", where, FIELDS_TAG
        )
        return Tagged(None, f"its {FIELDS_TAG} tag is not a JSON object")
    return Tagged(Fingerprint(fields))


def why_not_compared(current: Fingerprint, tagged: Tagged, metric: str) -> str | None:
    """Why ``metric`` cannot rank a version fingerprinted ``tagged`` against the current data;
    None when it can."""
    if tagged.fingerprint is None:
        return tagged.missing
    found = current.differences(tagged.fingerprint, metric)
    return None if not found else "evaluated on other data or settings: " + ", ".join(found)


# --------------------------------------------------------------------------- inputs


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
    figures_dir: Path  # reports/<variant>/, with a seed<k>/ folder per replicate; may not exist
    detail: dict[str, Any]  # the evaluation file as read

    def own_evaluation(self, seed: int) -> dict[str, Any] | None:
        """The replicate's own evaluation (the detail's shape), None when the file has none
        (written by an older vaelab)."""
        own = self.detail.get(OWN_EVALUATIONS)
        tree = own.get(str(seed)) if isinstance(own, dict) else None
        return tree if isinstance(tree, dict) else None

    def figures_of(self, seed: int) -> Path:
        """``reports/<variant>/seed<k>/``: the replicate's own figures (may not exist)."""
        return replicate_folder(self.figures_dir, seed)


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
            f"{eval_path}: no {EVALUATED_ON} record of the test split and settings "
            f"(written by an older vaelab); rerun `dvc repro evaluate@{variant}`"
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
    metrics = numeric_leaves(
        {key: value for key, value in payload.items() if key not in (EVALUATED_ON, OWN_EVALUATIONS)}
    )
    if cfg.metric not in metrics:
        raise UserError(
            f"{eval_path}: no numeric {cfg.metric!r}, the metric registry.metric ranks champions "
            "by; set registry.metric in params.yaml to one of: "
            f"{', '.join(sorted(metrics)) or '(none found)'}"
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
        detail=payload,
    )
