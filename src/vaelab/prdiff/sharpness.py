"""Did a variant's reconstructions get sharper or blurrier, beyond the measured noise?

Sharpness is the variance of the Laplacian of the test reconstructions
(``blur.laplacian_var.recon``; higher is sharper). Each side's value and its noise come
from ``metrics/detail/eval/<variant>.json`` when that file exists, else from
``metrics/eval/<variant>.json`` (the layout before the headline/detail split, which holds
the whole evaluation; the headline of the split layout has the same number as
``sharp``, :data:`vaelab.measures.headline.SHARPNESS_HEADLINE`).

The rule. A change ``Δ = new - old`` is significant when

    |Δ| > sqrt(hw_old² + hw_new²)

where ``hw`` is the half-width of a side's 95 % bootstrap interval
(``intervals["blur.laplacian_var.recon"]``: ``low``, ``high``; two-level, over training
seeds × test images). A half-width is about 1.96 standard errors, so the right-hand side
is 1.96 standard errors of the difference of two independent estimates: a two-sided test
at about 5 %. Both sides measure the same test images, so their errors are correlated and
the test errs towards "no significant change".

When a side has no such interval from at least two seeds (an older file without
``intervals``, or ``train.seeds: 1``, whose interval holds the test-image sampling only and
not the retraining noise), the fallback is a relative threshold: significant when
``|Δ| > 5 %`` of ``|old|`` (:data:`RELATIVE_THRESHOLD`). Identical values are never a change.
Every verdict says which rule decided it and with which numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vaelab.errors import UserError
from vaelab.io.json_files import is_number
from vaelab.io.metric_files import lookup
from vaelab.measures.headline import SHARPNESS, SHARPNESS_HEADLINE

if TYPE_CHECKING:
    from vaelab.prdiff.diff import Side

EVAL_METRICS_DIR = "metrics/eval"
DETAIL_EVAL_DIR = "metrics/detail/eval"
# The reconstructions' sharpness in the detail, and the same number in the headline file.
SHARPNESS_KEY = SHARPNESS.detail
HEADLINE_KEY = SHARPNESS_HEADLINE
# The fallback rule: a change larger than this fraction of |old| counts.
RELATIVE_THRESHOLD = 0.05
# An interval over fewer seeds than this leaves out the retraining noise.
MIN_SEEDS = 2

Status = Literal["sharper", "blurrier", "no significant change", "new", "removed", "incomparable"]
Rule = Literal["interval", "relative"]


@dataclass(frozen=True)
class Measured:
    """One side's sharpness: the mean and, where recorded, its 95 % interval."""

    mean: float
    low: float | None = None
    high: float | None = None
    seeds: int | None = None

    @property
    def half_width(self) -> float | None:
        """Half the 95 % interval; None when there is none, or it comes from fewer than two
        seeds."""
        if self.low is None or self.high is None or (self.seeds or 0) < MIN_SEEDS:
            return None
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class EvalRecord:
    """A variant's evaluation on one side: the file it was read from and its sharpness."""

    path: str
    sharpness: Measured | None


@dataclass(frozen=True)
class SharpnessChange:
    """How one variant's sharpness moved; ``old``/``new`` are None where absent.

    ``rule`` and ``threshold`` say what decided a comparison (|Δ| against ``threshold``);
    ``note`` says why the fallback rule was used, or why there is no comparison.
    """

    variant: str
    status: Status
    old: Measured | None
    new: Measured | None
    rule: Rule | None = None
    threshold: float | None = None
    note: str = ""

    @property
    def delta(self) -> float | None:
        """New mean minus old mean; None when a side is absent."""
        return None if self.old is None or self.new is None else self.new.mean - self.old.mean

    @property
    def percent(self) -> float | None:
        """The change in percent of |old|; None when a side is absent or old is 0."""
        if self.delta is None or self.old is None or self.old.mean == 0:
            return None
        return 100.0 * self.delta / abs(self.old.mean)


def measured(metrics: Any) -> Measured | None:
    """The sharpness in one parsed evaluation file, with its interval when the file has one."""
    for key in (SHARPNESS_KEY, HEADLINE_KEY):
        mean = lookup(metrics, key)
        if not is_number(mean):
            continue
        intervals = metrics.get("intervals") if isinstance(metrics, Mapping) else None
        interval = intervals.get(key) if isinstance(intervals, Mapping) else None
        if not isinstance(interval, Mapping) or not all(
            is_number(interval.get(k)) for k in ("low", "high", "seeds")
        ):
            return Measured(float(mean))
        return Measured(
            float(mean), float(interval["low"]), float(interval["high"]), int(interval["seeds"])
        )
    return None


def read_eval_records(side: Side, label: str) -> dict[str, EvalRecord]:
    """``{variant: its EvalRecord}`` on one side, from the detail file when there is one."""
    headline = {Path(path).stem: path for path in side.glob(f"{EVAL_METRICS_DIR}/*.json")}
    detail = {Path(path).stem: path for path in side.glob(f"{DETAIL_EVAL_DIR}/*.json")}
    records: dict[str, EvalRecord] = {}
    for variant in sorted(set(headline) | set(detail)):
        path = detail.get(variant) or headline[variant]
        try:
            metrics = json.loads(side.read_bytes(path))
        except json.JSONDecodeError as err:
            raise UserError(
                f"{path} at {label}: not valid JSON ({err}); fix or regenerate it with dvc repro"
            ) from None
        records[variant] = EvalRecord(path, measured(metrics))
    return records


def _compare(
    variant: str, old: Measured, new: Measured, old_label: str, new_label: str
) -> SharpnessChange:
    delta = new.mean - old.mean
    if old.half_width is not None and new.half_width is not None:
        rule: Rule = "interval"
        threshold, note = math.hypot(old.half_width, new.half_width), ""
    else:
        rule, threshold = "relative", RELATIVE_THRESHOLD * abs(old.mean)
        lacking = [
            label for label, side in ((old_label, old), (new_label, new)) if side.half_width is None
        ]
        note = "no 95 % interval over two or more seeds at " + " and ".join(lacking)
    if abs(delta) > threshold:
        status: Status = "sharper" if delta > 0 else "blurrier"
    else:
        status = "no significant change"
    return SharpnessChange(variant, status, old, new, rule, threshold, note)


def sharpness_changes(
    old: Mapping[str, EvalRecord],
    new: Mapping[str, EvalRecord],
    old_label: str,
    new_label: str = "the workspace",
) -> list[SharpnessChange]:
    """One verdict per variant found on either side (see the module's rule)."""
    verdicts: list[SharpnessChange] = []
    for variant in sorted(set(old) | set(new)):
        before, after = old.get(variant), new.get(variant)
        missing = [
            f"{record.path} at {label}"
            for label, record in ((old_label, before), (new_label, after))
            if record is not None and record.sharpness is None
        ]
        note = f"no numeric {SHARPNESS_KEY} in " + " and ".join(missing) if missing else ""
        if before is None:
            # Not on the old side, so on the new one.
            added = new[variant].sharpness
            status: Status = "new" if added is not None else "incomparable"
            verdicts.append(SharpnessChange(variant, status, None, added, note=note))
        elif after is None:
            verdicts.append(SharpnessChange(variant, "removed", before.sharpness, None))
        elif before.sharpness is None or after.sharpness is None:
            verdicts.append(
                SharpnessChange(
                    variant, "incomparable", before.sharpness, after.sharpness, note=note
                )
            )
        else:
            verdicts.append(
                _compare(variant, before.sharpness, after.sharpness, old_label, new_label)
            )
    return verdicts
