"""A claim, the comparisons it pools, and its outcome as counts.

Each comparison of a claim is decided on paired bootstrap intervals
(:mod:`vaelab.compare.comparisons`): it **holds** when every measure decides in the claimed
direction, **does not hold** when every measure decides against it, and is **inconclusive**
otherwise. A comparison that uses a collapsed variant is **collapsed** and counts for nothing.

A claim states its counts: holds for k of n comparisons, does not hold for j, inconclusive for
m, and which variants fall in each group. Its one-word outcome is "holds" when all n hold,
"mostly holds" when more than half hold and none goes against it, "does not hold" and "mostly
does not hold" the same the other way, "mixed" when some hold and some go against it, and
"inconclusive" otherwise; "not measured" when the variants at hand cannot test it, and
"collapsed" when every variant that could was collapsed. Its k
comparisons are decided at level 1 − 0.05 / k each (Bonferroni), so that the chance of any
wrong decision in the claim stays under 5 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vaelab.compare.comparisons import Comparison

Outcome = Literal[
    "holds",
    "mostly holds",
    "does not hold",
    "mostly does not hold",
    "inconclusive",
    "mixed",
    "not measured",
    "collapsed",
]
HOLDS: Outcome = "holds"
NOT_HOLDS: Outcome = "does not hold"
INCONCLUSIVE: Outcome = "inconclusive"
MIXED: Outcome = "mixed"
MOSTLY_HOLDS: Outcome = "mostly holds"
MOSTLY_NOT: Outcome = "mostly does not hold"
NOT_MEASURED: Outcome = "not measured"
COLLAPSED: Outcome = "collapsed"
COUNTED = (HOLDS, NOT_HOLDS, INCONCLUSIVE)


@dataclass(frozen=True)
class Claim:
    """A claim of the studies and the comparisons that test it."""

    key: str  # short: the key in metrics/compare.json
    text: str
    comparisons: tuple[Comparison, ...] = ()
    reason: str = ""  # why it is not measured

    def count(self, outcome: Outcome) -> int:
        return sum(c.outcome == outcome for c in self.comparisons)

    @property
    def counted(self) -> int:
        """n: the comparisons that count (collapsed ones do not)."""
        return sum(c.outcome in COUNTED for c in self.comparisons)

    @property
    def outcome(self) -> Outcome:
        n, holds, against = self.counted, self.count(HOLDS), self.count(NOT_HOLDS)
        if n == 0:  # nothing to test it on, or only collapsed variants
            return COLLAPSED if self.comparisons else NOT_MEASURED
        if holds == n:
            return HOLDS
        if against == n:
            return NOT_HOLDS
        if holds and against:
            return MIXED
        if holds > n / 2:
            return MOSTLY_HOLDS
        if against > n / 2:
            return MOSTLY_NOT
        return INCONCLUSIVE

    def variants(self, outcome: Outcome) -> list[str]:
        """The first variant of each comparison with that outcome, in order, once each."""
        return list(dict.fromkeys(c.a.variant for c in self.comparisons if c.outcome == outcome))

    def counts(self) -> str:
        """``holds for 12 of 13 (vae, ...); inconclusive for 1 (vae_z4); collapsed: 1 (...)``."""
        if not self.comparisons:
            return f"not measured: {self.reason}"
        parts = []
        for outcome, word in (
            (HOLDS, "holds"),
            (NOT_HOLDS, "does not hold"),
            (INCONCLUSIVE, "inconclusive"),
        ):
            if k := self.count(outcome):
                parts.append(
                    f"{word} for {k} of {self.counted} ({', '.join(self.variants(outcome))})"
                )
        if k := self.count(COLLAPSED):
            parts.append(f"not counted, collapsed: {k} ({', '.join(self.variants(COLLAPSED))})")
        return "; ".join(parts)

    def fractions(self) -> dict[str, float]:
        """``{"hold": k/n, "against": j/n}`` for metrics/compare.json (absent when n is 0)."""
        n = self.counted
        return {"hold": self.count(HOLDS) / n, "against": self.count(NOT_HOLDS) / n} if n else {}

    @property
    def flagged(self) -> list[str]:
        """Every flag its comparisons carry (e.g. a variant not converged), once each."""
        return list(dict.fromkeys(flag for c in self.comparisons for flag in c.flags))


def not_measured(key: str, text: str, reason: str) -> Claim:
    """A claim that the variants at hand cannot test, and why."""
    return Claim(key, text, (), reason)


def summary(claims: Sequence[Claim]) -> dict[Outcome, list[Claim]]:
    """The claims grouped by outcome, in a fixed order of outcomes."""
    order: list[Outcome] = [
        HOLDS,
        MOSTLY_HOLDS,
        MIXED,
        MOSTLY_NOT,
        NOT_HOLDS,
        INCONCLUSIVE,
        COLLAPSED,
        NOT_MEASURED,
    ]
    return {outcome: [c for c in claims if c.outcome == outcome] for outcome in order}
