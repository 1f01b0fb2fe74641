"""What an evaluate experiment returns, and how ``run_evaluate`` merges the results.

An experiment (:mod:`vaelab.evaluate.experiments`) is a function ``(Context) -> Result``, after
disentanglement_lib's ``evaluation_fn(...) -> dict``: it measures and draws; only
``run_evaluate`` writes files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Result:
    """One experiment's findings.

    ``metrics``: a nested dict with str keys and int or float leaves, merged into
    ``metrics/eval/<variant>.json``; ``per_image``: for the metrics that are means over the
    test images (or over the samples), the dotted key → the ``(N,)`` values averaged, from
    which the stage draws the metric's interval over seeds and images; ``notes``: text by
    topic, under that file's ``notes``; ``figures``: file name (``*.png``) -> Figure, saved
    into ``reports/<variant>/seed<k>/`` (each replicate's own, when ``Context.draw``).
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    per_image: dict[str, np.ndarray] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    # name -> (bins,) a curve over frequency (the spectra), averaged over seeds by the stage
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def merge_into(
    tree: dict[str, Any], addition: Mapping[str, Any], *, kind: str, source: str
) -> None:
    """Copy ``addition`` into ``tree`` in place; nested dicts merge key by key.

    A key both already hold (other than two dicts) raises ValueError naming its dotted path,
    ``kind`` (metric, note, figure) and ``source`` (the experiment adding it): each number has
    exactly one author, so no experiment silently overwrites another's.
    """
    _merge(tree, addition, (), kind, source)


def _merge(
    tree: dict[str, Any], addition: Mapping[str, Any], path: tuple[str, ...], kind: str, source: str
) -> None:
    """:func:`merge_into` at ``path``."""
    for key, value in addition.items():
        where = (*path, key)
        if isinstance(value, Mapping):
            branch = tree.setdefault(key, {})
            if not isinstance(branch, dict):
                raise ValueError(_clash(where, kind, source))
            _merge(branch, value, where, kind, source)
        elif key in tree:
            raise ValueError(_clash(where, kind, source))
        else:
            tree[key] = value


def _clash(where: tuple[str, ...], kind: str, source: str) -> str:
    """The error message for a key written twice."""
    return (
        f"experiment {source!r} writes {kind} {'.'.join(where)!r}, "
        "which another experiment wrote already"
    )


def key_segment(value: float) -> str:
    """A number as a metric-key segment without dots: 0.5 → '0_5', 3.0 → '3', -1 → 'm1'."""
    return f"{value:g}".replace(".", "_").replace("-", "m")


def means(per_image: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"a.b": (N,) values}`` → ``{"a": {"b": mean}}``: the metrics a per-image dict stands
    for."""
    tree: dict[str, Any] = {}
    for key, values in per_image.items():
        *branches, leaf = key.split(".")
        node = tree
        for branch in branches:
            node = node.setdefault(branch, {})
        node[leaf] = float(np.mean(values))
    return tree
