"""A claim and its outcome, decided on intervals: holds, does not hold, inconclusive, or
not measured (with the reason).

A claim that one quantity is lower than another **holds** when the first one's 95 %
interval lies wholly below the second's, **does not hold** when it lies wholly above,
and is **inconclusive** when the two intervals overlap: the seeds and test images at hand
cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from vaelab.stats.intervals import Estimate

Outcome = Literal["holds", "does not hold", "inconclusive", "not measured"]
HOLDS: Outcome = "holds"
NOT_HOLDS: Outcome = "does not hold"
INCONCLUSIVE: Outcome = "inconclusive"
NOT_MEASURED: Outcome = "not measured"

# How an outcome is written in metrics/compare.json (a not-measured claim is left out).
SCORE: dict[Outcome, int] = {HOLDS: 1, INCONCLUSIVE: 0, NOT_HOLDS: -1}


@dataclass(frozen=True)
class Claim:
    """A claim of the studies and how it came out on the variants at hand."""

    key: str
    text: str
    outcome: Outcome
    variants: tuple[str, ...]  # the variants it compares (empty when not measured for want of them)
    detail: str  # the numbers and n, or why it was not measured


def lower(a: Estimate, b: Estimate) -> Outcome:
    """The outcome of "a is lower than b"."""
    if a.high < b.low:
        return HOLDS
    if a.low > b.high:
        return NOT_HOLDS
    return INCONCLUSIVE


def higher(a: Estimate, b: Estimate) -> Outcome:
    """The outcome of "a is higher than b"."""
    return lower(b, a)


def every(outcomes: Iterable[Outcome]) -> Outcome:
    """The outcome of "each of these holds": any clear contradiction decides against it."""
    outcomes = list(outcomes)
    if not outcomes:
        return NOT_MEASURED
    if NOT_HOLDS in outcomes:
        return NOT_HOLDS
    if all(outcome == HOLDS for outcome in outcomes):
        return HOLDS
    return INCONCLUSIVE


def not_measured(key: str, text: str, reason: str) -> Claim:
    """A claim that the variants at hand cannot test, and why."""
    return Claim(key, text, NOT_MEASURED, (), reason)
