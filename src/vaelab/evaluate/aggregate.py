"""Combine the replicates of one variant: each metric's mean and standard deviation over
seeds, and, for the metrics that are means over test images (or samples), their 95 %
bootstrap interval over seeds and images."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vaelab.stats.intervals import estimate


@dataclass(frozen=True)
class Replicate:
    """What the experiments measured on one trained seed."""

    seed: int
    metrics: dict[str, Any]  # the merged metric tree
    per_image: dict[str, np.ndarray]  # dotted key -> (N,) values whose mean the tree holds
    notes: dict[str, str]
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (bins,)


def combine(
    replicates: list[Replicate], *, bootstrap_seed: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(mean tree, sd tree, intervals)`` over ``replicates`` (which must measure the same keys).

    A leaf every replicate agrees on (a count, a dimension) is kept as it is; others are
    averaged. ``intervals``: dotted key → :class:`~vaelab.stats.intervals.Estimate` as a dict.
    """
    trees = [r.metrics for r in replicates]
    mean_tree, sd_tree = _combine_trees(trees, ())
    keys = replicates[0].per_image.keys()
    for r in replicates[1:]:
        if r.per_image.keys() != keys:
            raise ValueError(
                f"replicate seed {r.seed} measured other per-image metrics than "
                f"seed {replicates[0].seed}"
            )
    intervals = {
        key: estimate(
            np.stack([r.per_image[key] for r in replicates]), seed=bootstrap_seed
        ).to_dict()
        for key in sorted(keys)
    }
    return mean_tree, sd_tree, intervals


def _combine_trees(
    trees: list[dict[str, Any]], path: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mean tree and the sd tree of ``trees`` (at ``path``), key by key."""
    keys = trees[0].keys()
    if any(tree.keys() != keys for tree in trees[1:]):
        raise ValueError(
            f"replicates measured different metrics under {'.'.join(path) or 'the top level'}"
        )
    means: dict[str, Any] = {}
    sds: dict[str, Any] = {}
    for key in keys:
        values = [tree[key] for tree in trees]
        if isinstance(values[0], dict):
            means[key], sds[key] = _combine_trees(values, (*path, key))
        elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            array = np.asarray(values, dtype=np.float64)
            means[key] = values[0] if all(v == values[0] for v in values) else float(array.mean())
            sds[key] = float(array.std(ddof=1)) if len(values) > 1 else 0.0
        else:
            raise ValueError(f"metric {'.'.join((*path, key))} is not a number: {values[0]!r}")
    return means, sds


def combine_notes(replicates: list[Replicate]) -> dict[str, str]:
    """One text per topic: the replicates' text when they agree, else each seed's."""
    notes = {}
    for topic in sorted({topic for r in replicates for topic in r.notes}):
        texts = [(r.seed, r.notes[topic]) for r in replicates if topic in r.notes]
        if len({text for _seed, text in texts}) == 1 and len(texts) == len(replicates):
            notes[topic] = texts[0][1]
        else:
            notes[topic] = " | ".join(f"seed {seed}: {text}" for seed, text in texts)
    return notes


def combine_curves(replicates: list[Replicate]) -> dict[str, dict[str, list[float]]]:
    """Each curve's mean, standard deviation, minimum and maximum over the replicates, point by
    point (the range draws as a band on a log axis, where mean ± sd can go below zero)."""
    names = sorted(replicates[0].curves)
    if any(sorted(r.curves) != names for r in replicates[1:]):
        raise ValueError("replicates measured different curves")
    combined = {}
    for name in names:
        stacked = np.stack([np.asarray(r.curves[name], dtype=np.float64) for r in replicates])
        sd = stacked.std(axis=0, ddof=1) if len(replicates) > 1 else np.zeros(stacked.shape[1])
        combined[name] = {
            "mean": stacked.mean(axis=0).tolist(),
            "sd": sd.tolist(),
            "min": stacked.min(axis=0).tolist(),
            "max": stacked.max(axis=0).tolist(),
        }
    return combined
