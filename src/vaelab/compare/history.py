"""Every variant's training curves in one long table, ``metrics/compare/history.csv``, grouped
for DVC's curves chart (``dvc.yaml``'s top-level ``plots:``, template ``.dvc/plots/families.json``):
one panel per group, each with its own axes and a legend of a few variants.

The groups are the one-knob sweeps (:mod:`vaelab.compare.families`) whose members share a loss
scale, then, per loss scale, the variants in none of them. The loss scale is the
reconstruction term: binary cross-entropy and the Gaussian negative log-likelihood of a
learned-σ decoder are both in nats, but the latter falls far below zero as σ shrinks (970 to
−560 on the default run), so a BCE curve beside it is a flat line. A sweep across scales (the
``recon_loss`` family) is left out: its members are drawn in their own scales' groups.

A variant in several sweeps (the default VAE is in the latent-size one and the KL one) has its
rows once per group; the ``family`` column names the group, and rows are in the order of the
group's legend (a sweep by its knob's value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from vaelab.compare.families import Family
from vaelab.io.atomic import atomic_file

# Training-curve columns every variant has (VAEs add their KL terms, left out here).
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "train_recon", "val_recon"]
FAMILY_COLUMN = "family"
PANEL_COLUMN = "panel"  # the group's place, 0 first: the chart's panels in this order
# The words for a loss scale in a group's title: a model config's recon_loss.
SCALES = {"bce": "BCE", "mse": "MSE", "gaussian": "Gaussian NLL"}


@dataclass(frozen=True)
class CurveGroup:
    """One panel of the curves chart: its title and its variants, in legend order."""

    title: str
    variants: tuple[str, ...]


def loss_scale(config: BaseModel) -> str:
    """The words for the scale of a variant's loss: its reconstruction term."""
    recon_loss = str(getattr(config, "recon_loss", "bce"))
    return SCALES.get(recon_loss, recon_loss)


def curve_groups(models: Mapping[str, BaseModel], families: list[Family]) -> list[CurveGroup]:
    """The sweeps of ``families`` whose members share a loss scale, then, per scale in the
    order of ``models``, the variants in none of them."""
    scale = {name: loss_scale(config) for name, config in models.items()}
    groups = []
    for family in families:
        scales = {scale[name] for name in family.variants}
        if len(scales) == 1:
            members = zip(family.variants, family.values, strict=True)
            values = ", ".join(f"{name} ({value})" for name, value in members)
            title = f"{family.knob} sweep, {scales.pop()}: {values}"
            groups.append(CurveGroup(title, family.variants))
    grouped = {name for group in groups for name in group.variants}
    rest: dict[str, list[str]] = {}
    for name in models:
        if name not in grouped:
            rest.setdefault(scale[name], []).append(name)
    for words, names in rest.items():
        others = "other variants" if grouped else "every variant"
        title = f"{others}, {words}" if len(names) > 1 else f"{names[0]}, {words}"
        groups.append(CurveGroup(title, tuple(names)))
    return groups


def write_history(
    histories: Mapping[str, pd.DataFrame], groups: list[CurveGroup], path: Path
) -> None:
    """The long table at ``path``: per group, each member's curves (``HISTORY_COLUMNS`` it
    has) with its ``variant``, the group's title as ``family`` and its place as ``panel``;
    nothing when no variant has a history."""
    parts = [
        histories[name][[c for c in HISTORY_COLUMNS if c in histories[name]]].assign(
            variant=name, **{FAMILY_COLUMN: group.title, PANEL_COLUMN: panel}
        )
        for panel, group in enumerate(groups)
        for name in group.variants
        if name in histories
    ]
    if parts:
        with atomic_file(path) as handle:
            pd.concat(parts, ignore_index=True).to_csv(handle, index=False, lineterminator="\n")
