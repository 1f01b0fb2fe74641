"""Families of variants that differ in exactly one model knob: the sweeps the studies argue
from (latent size, KL weight, reconstruction weight, …).

Two variants are in one family for knob ``k`` when their ``models:`` entries, every
default filled in, are equal in every key but ``k`` and differ in ``k``. ``arch`` is no
knob: two architectures are two models, not two settings of one. A variant can be
in several families (the default VAE is in the latent-size family and the KL one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Family:
    """Variants that differ in one knob only, ordered by its value."""

    knob: str  # the one key in which the members differ, e.g. "z_dim"
    variants: tuple[str, ...]  # ordered by the knob's value
    values: tuple[Any, ...]  # the knob's value for each variant, in that order


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers in numeric order, anything else (a tuple of filters, a name) by its text.
    return (
        (0, value)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else (1, json.dumps(value))
    )


def find_families(models: Mapping[str, BaseModel]) -> list[Family]:
    """Every family of two or more variants differing in exactly one knob, by knob then
    first member."""
    entries = {name: config.model_dump(mode="json") for name, config in models.items()}
    families = []
    knobs = sorted({key for entry in entries.values() for key in entry} - {"arch"})
    for knob in knobs:
        groups: dict[str, list[str]] = {}
        for name, entry in entries.items():
            if knob not in entry:
                continue
            rest = {key: value for key, value in entry.items() if key != knob}
            groups.setdefault(json.dumps(rest, sort_keys=True), []).append(name)
        for names in groups.values():
            values = [entries[name][knob] for name in names]
            distinct = {json.dumps(value) for value in values}
            if len(names) >= 2 and len(distinct) == len(names):
                ordered = sorted(
                    zip(values, names, strict=True), key=lambda pair: _sort_key(pair[0])
                )
                families.append(
                    Family(knob, tuple(n for _v, n in ordered), tuple(v for v, _n in ordered))
                )
    return sorted(families, key=lambda family: (family.knob, family.variants))
