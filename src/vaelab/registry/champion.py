"""Who may move ``champion``, and when it moves.

``champion`` is what serving uses, so it moves only in a plain ``dvc repro`` of committed
params (:func:`champion_rule`), or by hand with ``vaelab promote``:

- inside a DVC experiment (``DVC_EXP_NAME`` set: ``dvc exp run``, queued or ``--temp``),
  the version gets the alias ``exp-<name>`` (:func:`experiment_alias`) instead;
- with ``params.yaml`` not committed as it is, champion stays too.

A version registered in either case is tagged ``champion_pending``: a later plain repro
of committed params that meets the same weights (after ``dvc exp apply`` and a commit)
lets it compete then, as if it were new. In a plain repro, :func:`decide_champion` says
whether the version beats the champion on ``registry.metric``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vaelab.tracking import Provenance

CHAMPION = "champion"
PENDING_TAG = "champion_pending"  # version tag: registered where champion could not move
EXPERIMENT_ALIAS_PREFIX = "exp-"
# MLflow's alias rule is [\w-]+ (at most 255 characters, not "latest", not v<digits>);
# ASCII only here, so that every store and URL takes it.
_NOT_ALIAS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_ALIAS = 255

REPRO = "repro"
EXPERIMENT = "experiment"
UNCOMMITTED = "uncommitted-params"


def experiment_alias(name: str) -> str:
    """``exp-<name>`` with every run of characters MLflow refuses in an alias made one '-'."""
    cleaned = _NOT_ALIAS.sub("-", name).strip("-") or "unnamed"
    return (EXPERIMENT_ALIAS_PREFIX + cleaned)[:_MAX_ALIAS]


@dataclass(frozen=True)
class ChampionRule:
    """What this register run may do with ``champion``."""

    kind: str  # REPRO, EXPERIMENT or UNCOMMITTED
    experiment: str | None = None
    alias: str | None = None  # exp-<name> inside an experiment

    @property
    def may_move(self) -> bool:
        return self.kind == REPRO

    def held_reason(self, variant: str, number: int, champion: int | None) -> str:
        """Why champion did not move (when :attr:`may_move` is false), with the way to move it."""
        stays = "no champion yet" if champion is None else f"champion stays at version {champion}"
        promote = f"`vaelab promote {variant} --version {number}`"
        if self.kind == EXPERIMENT:
            return (
                f"DVC experiment {self.experiment!r}: version {number} gets alias {self.alias}; {stays} "
                f"(an experiment never moves champion: `vaelab promote {variant} --alias {self.alias}`, or "
                "`dvc exp apply` it, commit, and `dvc repro`)"
            )
        return (
            f"params.yaml has uncommitted changes: {stays} (champion moves only in a `dvc repro` of "
            f"committed params: commit params.yaml and rerun `dvc repro register`, or {promote})"
        )

    def summary(self) -> dict[str, str | None]:
        return {"kind": self.kind, "experiment": self.experiment, "alias": self.alias}


def champion_rule(provenance: Provenance, params_committed: bool | None) -> ChampionRule:
    """The rule for this run: an experiment, uncommitted params, or a plain repro.

    ``params_committed`` None (no git repository: no experiments either) counts as committed.
    """
    if provenance.experiment:
        return ChampionRule(EXPERIMENT, provenance.experiment, experiment_alias(provenance.experiment))
    if params_committed is False:
        return ChampionRule(UNCOMMITTED)
    return ChampionRule(REPRO)


@dataclass(frozen=True)
class ChampionDecision:
    moves: bool
    reason: str


def decide_champion(
    *,
    metric: str,
    mode: str,
    candidate: int,
    candidate_value: float,
    champion: int | None,
    champion_value: float | None,
    is_new: bool,
) -> ChampionDecision:
    """Whether ``champion`` should point at version ``candidate`` now, and why, in words.

    A new version takes over when there is no champion, when the champion has no value
    for ``metric``, or when it is strictly better (lower for ``min``, higher for ``max``).
    A reused version (model unchanged) takes over only when there is no champion at all.
    """
    shown = f"{metric} = {candidate_value:g}"
    if champion is None:
        return ChampionDecision(True, f"no champion yet: version {candidate} becomes champion ({shown})")
    if champion == candidate:
        return ChampionDecision(False, f"version {candidate} is already the champion ({shown})")
    if not is_new:
        return ChampionDecision(
            False,
            f"model unchanged since version {candidate} ({shown}): nothing new to compare, "
            f"champion stays at version {champion}"
            + ("" if champion_value is None else f" ({metric} = {champion_value:g})"),
        )
    if champion_value is None or math.isnan(champion_value):
        return ChampionDecision(
            True, f"champion version {champion} has no {metric}: version {candidate} takes over ({shown})"
        )
    better = candidate_value < champion_value if mode == "min" else candidate_value > champion_value
    sign = ("<" if mode == "min" else ">") if better else (">=" if mode == "min" else "<=")
    direction = "lower" if mode == "min" else "higher"
    comparison = f"{metric} {candidate_value:g} {sign} {champion_value:g} ({direction} is better)"
    if better:
        return ChampionDecision(True, f"version {candidate} beats champion version {champion}: {comparison}")
    return ChampionDecision(
        False, f"version {candidate} does not beat champion version {champion}: {comparison}; champion stays"
    )
