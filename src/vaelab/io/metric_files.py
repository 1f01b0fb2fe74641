"""The three files a stage's numbers go to under ``metrics/``; the one module that knows their
paths.

For a record ``<name>.json`` of ``metrics/`` (``eval/vae.json``, ``train/vae.json``, ``data.json``):

- the **headline**, ``metrics/<name>.json``: a few numbers a person compares, declared as DVC
  ``metrics`` (what ``dvc metrics show/diff`` and ``dvc exp show`` list);
- the **detail**, ``metrics/detail/<name>.json``: everything the stage measured, including
  spreads, intervals and notes in words; a DVC output kept in git (``cache: false``), read
  by the later stages and by ``vaelab report``;
- the **timing**, ``metrics/timing/<name>.json``: seconds, throughput and the device. It
  changes on every run, so it is never a DVC metric: a diff of metrics shows the change a
  params edit made, not the machine's noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.io.json_files import write_json

DETAIL_DIR = "detail"
TIMING_DIR = "timing"
# The section of an evaluation's detail that holds each replicate's own numbers, by seed
# (``seeds.<seed>``, in the shape of the detail): the rest of the detail is over seeds.
OWN_EVALUATIONS = "seeds"


@dataclass(frozen=True)
class MetricFiles:
    """The headline, detail and timing paths of one record."""

    headline: Path
    detail: Path
    timing: Path

    def write(
        self,
        headline: Mapping[str, Any],
        detail: Mapping[str, Any],
        timing: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the record's files (each atomically); ``timing`` None writes no timing file."""
        write_json(self.detail, dict(detail))
        if timing is not None:
            write_json(self.timing, dict(timing))
        write_json(self.headline, dict(headline))


def metric_files(metrics_root: Path, record: str) -> MetricFiles:
    """The files of ``record`` (a path relative to ``metrics_root`` such as ``eval/vae.json``)."""
    return MetricFiles(
        metrics_root / record,
        metrics_root / DETAIL_DIR / record,
        metrics_root / TIMING_DIR / record,
    )


def headline_of(detail: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """A nested headline tree: ``keys`` maps each headline dotted key to a dotted key of
    ``detail``; a detail key that is absent (an AE's ELBO) leaves its headline key out.

    >>> headline_of({"blur": {"lv": {"recon": 0.1}}, "recon": {"mse": 2}},
    ...             {"sharpness.recon": "blur.lv.recon", "recon.mse": "recon.mse", "elbo": "elbo"})
    {'sharpness': {'recon': 0.1}, 'recon': {'mse': 2}}
    """
    headline: dict[str, Any] = {}
    for target, source in keys.items():
        value = lookup(detail, source)
        if value is None:
            continue
        node = headline
        *parents, leaf = target.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return headline


def lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; None when any part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
