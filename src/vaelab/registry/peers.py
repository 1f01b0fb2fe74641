"""Which versions of a registered model ``registry.metric`` may rank against the current evaluation.

A version is a peer when its fingerprint tags compare with the current fingerprint on the
metric (:func:`vaelab.registry.fingerprint.why_not_compared`); every other version is not
compared, with the reason: other data or settings (the fields that differ), or no
fingerprint at all (registered before fingerprints).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaelab.registry.champion import PENDING_TAG
from vaelab.registry.fingerprint import Fingerprint, of_tags, why_not_compared

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("vaelab.registry")

METRIC_TAG = "metric."  # version tag prefix: metric.recon.mse = "0.0123"


def metric_tag(version: ModelVersion, metric: str) -> float | None:
    """The version's ``metric.<metric>`` tag as a number; None when it is missing or not a number."""
    raw = (version.tags or {}).get(METRIC_TAG + metric)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        log.warning(
            "%s version %s: tag %s%s = %r is not a number; treated as missing",
            version.name,
            version.version,
            METRIC_TAG,
            metric,
            raw,
        )
        return None


@dataclass(frozen=True)
class NotCompared:
    version: int
    fingerprint: str | None  # its id, None when it has none
    reason: str

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "fingerprint": self.fingerprint, "reason": self.reason}


@dataclass(frozen=True)
class Peers:
    """The versions ``metric`` ranks against the current evaluation, and those it does not."""

    values: dict[int, float | None]  # peer version -> its metric tag (None: missing)
    pending: frozenset[int]  # peers registered where champion could not move, not yet competed
    not_compared: dict[int, NotCompared]

    def compared(self) -> list[int]:
        return sorted(self.values)

    def contenders(self, candidate: int, candidate_value: float) -> dict[int, float]:
        """The peers that may take champion now, with their values: ``candidate`` and every
        peer that has competed before and has a number."""
        found = {
            number: value
            for number, value in self.values.items()
            if number not in self.pending and value is not None and not math.isnan(value)
        }
        return found | {candidate: candidate_value}


def find_peers(versions: list[ModelVersion], current: Fingerprint, metric: str) -> Peers:
    """Sort ``versions`` into peers of ``current`` on ``metric`` and versions not compared."""
    values: dict[int, float | None] = {}
    pending = set()
    not_compared = {}
    for version in versions:
        number, tags = int(version.version), version.tags or {}
        tagged = of_tags(tags, f"{version.name} version {number}")
        reason = why_not_compared(current, tagged, metric)
        if reason is None:
            values[number] = metric_tag(version, metric)
            if tags.get(PENDING_TAG) == "true":
                pending.add(number)
        else:
            not_compared[number] = NotCompared(number, tagged.id, reason)
    return Peers(values, frozenset(pending), dict(sorted(not_compared.items())))
