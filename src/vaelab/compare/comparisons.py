"""Paired comparisons of what evaluate measured, read from the per-image tables.

A **comparison** puts one side (a variant's set: its reconstructions, samples, inputs,
sharpened reconstructions) against another on the same measures, and decides each measure
on the bootstrap interval of the difference (:func:`vaelab.stats.paired.paired_difference`):
paired over the same test images when both sides are test-image sets (images resampled
jointly), unpaired when either side is samples. A sharpness comparison is decided on two
measures that must agree: the Laplacian variance and the spectral half-power frequency.

A comparison that uses a variant with a collapsed replicate (its decoder ignores z) is
marked **collapsed** and counts for nothing; one that uses a variant whose training had not
converged is marked so, with the numbers, and still counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from vaelab.compare.verdicts import COLLAPSED, HOLDS, INCONCLUSIVE, NOT_HOLDS, Outcome
from vaelab.io.per_image_table import is_test_image_set, per_image_path, read_tables
from vaelab.stats.paired import PairedDifference, paired_difference

Direction = Literal["lower", "higher"]

# The two sharpness measures every sharpness comparison is decided on, by what they are called.
SHARPNESS_MEASURES = {
    "laplacian_var": "Laplacian variance",
    "half_power": "half-power frequency",
}


def measure_for(measure: str, side_set: str, other_set: str) -> str:
    """The table's measure for one side: the half-power frequency of a test-image set is over
    its own input's spectrum, but over the test images' mean spectrum when either side is
    samples (which have no input of their own)."""
    if measure == "half_power" and not (
        is_test_image_set(side_set) and is_test_image_set(other_set)
    ):
        return "half_power_ref"
    return measure


@dataclass(frozen=True)
class Side:
    """One variant's set of measured images: ``("vae", "recon")``."""

    variant: str
    set: str

    def shown(self) -> str:
        return f"{self.variant} {self.set}"


@dataclass(frozen=True)
class Status:
    """What compare knows of a variant beyond its numbers: collapse and convergence."""

    collapsed_seeds: int = 0
    seeds: int = 0
    not_converged: str = ""  # why, with the numbers; empty when it converged


@dataclass
class Measurements:
    """Every variant's per-image table, grouped for fast lookup, and each variant's status."""

    table: pd.DataFrame
    status: dict[str, Status] = field(default_factory=dict)
    _groups: dict[tuple[str, str, str], pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, rows in self.table.groupby(["variant", "set", "measure"], sort=False):
            self._groups[(str(key[0]), str(key[1]), str(key[2]))] = rows

    @classmethod
    def read(
        cls, metrics_root: Path, variants: Sequence[str], status: dict[str, Status]
    ) -> Measurements:
        return cls(read_tables([per_image_path(metrics_root, v) for v in variants]), status)

    def groups(self) -> list[tuple[str, str, str]]:
        """Every (variant, set, measure) measured."""
        return list(self._groups)

    def has(self, side: Side, measure: str) -> bool:
        return (side.variant, side.set, measure) in self._groups

    def values(self, side: Side, measure: str, *, by: str) -> tuple[np.ndarray, list[str]]:
        """``(seeds, items)`` values of one side's measure, items in ``by`` order ("image_id"
        or "item"), and the item labels."""
        rows = self._groups.get((side.variant, side.set, measure))
        if rows is None:
            raise KeyError(f"{side.shown()}: no per-image values of {measure}")
        wide = rows.pivot(index="seed", columns=by, values="value").sort_index().sort_index(axis=1)
        return np.asarray(wide.to_numpy(), dtype=np.float64), [str(c) for c in wide.columns]


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one or more measures, with the outcome of "a is ``expected``"."""

    label: str
    a: Side
    b: Side
    expected: Direction
    results: dict[str, PairedDifference]  # measure -> a − b
    outcome: Outcome
    note: str = ""  # why inconclusive, collapsed or flagged
    flags: tuple[str, ...] = ()  # e.g. "not converged"

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.a.variant, self.b.variant)))

    def to_dict(self) -> dict[str, Any]:
        """The comparison as metrics/detail/compare.json records it."""
        return {
            "label": self.label,
            "a": [self.a.variant, self.a.set],
            "b": [self.b.variant, self.b.set],
            "expected": self.expected,
            "outcome": self.outcome,
            "note": self.note,
            "flags": list(self.flags),
            "results": {measure: r.to_dict() for measure, r in self.results.items()},
        }

    def line(self) -> str:
        """One line of the detail report: every measure's difference, interval and n."""
        parts = []
        for measure, r in self.results.items():
            parts.append(
                f"{SHARPNESS_MEASURES.get(measure, measure)} {r.shown()} "
                f"(n = {r.seeds_a}/{r.seeds_b} seeds × {r.images}, level {r.level:.4g})"
            )
        tail = f" {self.note}" if self.note else ""
        flags = f" [{', '.join(self.flags)}]" if self.flags else ""
        return f"{self.label}: {self.outcome}{flags}. " + "; ".join(parts) + "." + tail


def _decide(results: dict[str, PairedDifference], expected: Direction) -> tuple[Outcome, str]:
    directions = {m: r.direction for m, r in results.items()}
    opposite = "higher" if expected == "lower" else "lower"
    if all(d == expected for d in directions.values()):
        return HOLDS, ""
    if all(d == opposite for d in directions.values()):
        return NOT_HOLDS, ""
    if len(set(directions.values())) > 1:
        said = ", ".join(f"{SHARPNESS_MEASURES.get(m, m)} {d}" for m, d in directions.items())
        return INCONCLUSIVE, f"The measures do not agree ({said})."
    return INCONCLUSIVE, ""


def compare(
    data: Measurements,
    label: str,
    a: Side,
    b: Side,
    measures: Sequence[str],
    expected: Direction,
    *,
    level: float,
    seed: int = 0,
) -> Comparison:
    """Decide "``a`` is ``expected`` than ``b``" on every measure at interval ``level``."""
    joint = is_test_image_set(a.set) and is_test_image_set(b.set)
    by = "image_id" if joint else "item"
    results = {}
    for measure in measures:
        x, x_items = data.values(a, measure_for(measure, a.set, b.set), by=by)
        y, y_items = data.values(b, measure_for(measure, b.set, a.set), by=by)
        if joint and x_items != y_items:
            common = sorted(set(x_items) & set(y_items))
            x = x[:, [x_items.index(i) for i in common]]
            y = y[:, [y_items.index(i) for i in common]]
        results[measure] = paired_difference(x, y, seed=seed, level=level, joint=joint)
    outcome, note = _decide(results, expected)
    flags = []
    for variant in dict.fromkeys((a.variant, b.variant)):
        status = data.status.get(variant, Status())
        if status.collapsed_seeds:
            outcome = COLLAPSED
            note = (
                f"{variant}: {status.collapsed_seeds} of {status.seeds} replicate(s) collapsed "
                "(the decoder ignores z), so this comparison does not count."
            )
        if status.not_converged:
            flags.append(f"{variant} not converged: {status.not_converged}")
    return Comparison(label, a, b, expected, results, outcome, note, tuple(flags))
