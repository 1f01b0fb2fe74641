"""Who may move ``champion``, when it moves, and which versions it is chosen among.

``champion`` is what serving uses, so it moves only in a plain ``dvc repro`` of committed
params (:func:`champion_rule`), or by hand with ``vaelab promote``:

- inside a DVC experiment (``DVC_EXP_NAME`` set: ``dvc exp run``, queued or ``--temp``),
  the version gets the alias ``exp-<name>`` (:func:`experiment_alias`) instead;
- with ``params.yaml`` not committed as it is, champion stays too.

A version registered in either case is tagged ``champion_pending``: a later plain repro
of committed params that meets the same weights (after ``dvc exp apply`` and a commit)
lets it compete then, as if it were new. In a plain repro, :func:`decide_champion` says
whether the version beats the champion on ``registry.metric``.

A metric ranks only versions evaluated on the same data and settings (their fingerprints,
:mod:`.inputs`). Those are the current evaluation's peers (:func:`find_peers`); every other
version is not compared, with the reason: other data or settings (the fields that
differ), or no fingerprint at all (registered before fingerprints). When the champion is
not comparable with the current evaluation (the params moved to other data, or it was
registered before fingerprints), champion moves to the best version that is
(:func:`decide_incomparable`). Champion is the model for the data of the current params.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vaelab.registry.inputs import Fingerprint, of_tags, why_not_compared
from vaelab.tracking import Provenance

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("vaelab.registry")

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

    def held_reason(
        self, variant: str, number: int, champion: int | None, not_compared: str | None = None
    ) -> str:
        """Why champion did not move (when :attr:`may_move` is false), with the way to move it;
        ``not_compared`` says why the champion is not comparable with this evaluation, if it
        is not."""
        stays = "no champion yet" if champion is None else f"champion stays at version {champion}"
        promote = f"`vaelab promote {variant} --version {number}`"
        if self.kind == EXPERIMENT:
            held = (
                f"DVC experiment {self.experiment!r}: version {number} gets alias {self.alias}; "
                f"{stays} (an experiment never moves champion: "
                f"`vaelab promote {variant} --alias {self.alias}`, or "
                "`dvc exp apply` it, commit, and `dvc repro`)"
            )
        else:
            held = (
                f"params.yaml has uncommitted changes: {stays} (champion moves only in a "
                "`dvc repro` of committed params: commit params.yaml and rerun "
                f"`dvc repro register`, or {promote})"
            )
        if not_compared is None or champion is None:
            return held
        return (
            f"{held}; champion version {champion} is not compared with this evaluation "
            f"({not_compared}): a `dvc repro` of these params, committed, makes the best version "
            "evaluated like this one champion"
        )

    def summary(self) -> dict[str, str | None]:
        return {"kind": self.kind, "experiment": self.experiment, "alias": self.alias}


def champion_rule(provenance: Provenance, params_committed: bool | None) -> ChampionRule:
    """The rule for this run: an experiment, uncommitted params, or a plain repro.

    ``params_committed`` None (no git repository: no experiments either) counts as committed.
    """
    if provenance.experiment:
        return ChampionRule(
            EXPERIMENT, provenance.experiment, experiment_alias(provenance.experiment)
        )
    if params_committed is False:
        return ChampionRule(UNCOMMITTED)
    return ChampionRule(REPRO)


@dataclass(frozen=True)
class ChampionDecision:
    moves: bool
    reason: str
    target: int | None = None  # the version champion moves to (None: it stays)


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
        return ChampionDecision(
            True, f"no champion yet: version {candidate} becomes champion ({shown})", candidate
        )
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
            True,
            f"champion version {champion} has no {metric}: "
            f"version {candidate} takes over ({shown})",
            candidate,
        )
    better = candidate_value < champion_value if mode == "min" else candidate_value > champion_value
    sign = ("<" if mode == "min" else ">") if better else (">=" if mode == "min" else "<=")
    direction = "lower" if mode == "min" else "higher"
    comparison = f"{metric} {candidate_value:g} {sign} {champion_value:g} ({direction} is better)"
    if better:
        return ChampionDecision(
            True, f"version {candidate} beats champion version {champion}: {comparison}", candidate
        )
    return ChampionDecision(
        False,
        f"version {candidate} does not beat champion version {champion}: {comparison}; "
        "champion stays",
    )


def best_version(contenders: dict[int, float], mode: str, prefer: int) -> int:
    """The version with the best value (lowest for ``min``); a tie goes to ``prefer``, then to
    the newer."""
    sign = 1 if mode == "min" else -1
    return min(
        contenders, key=lambda number: (sign * contenders[number], number != prefer, -number)
    )


def decide_incomparable(
    *,
    metric: str,
    mode: str,
    candidate: int,
    champion: int,
    not_compared: str,
    contenders: dict[int, float],
) -> ChampionDecision:
    """The champion was evaluated on other data or settings than the current evaluation
    (``not_compared`` says how): champion moves to the best of ``contenders``, the versions
    that are comparable (``candidate`` among them), and the reason says so."""
    best = best_version(contenders, mode, prefer=candidate)
    among = (
        "the only version"
        if len(contenders) == 1
        else f"the best ({'lowest' if mode == 'min' else 'highest'} "
        f"{metric}) of {len(contenders)} versions"
    )
    return ChampionDecision(
        True,
        f"champion version {champion} is not compared with the current evaluation "
        f"({not_compared}): version {best} becomes champion, {among} evaluated on the current "
        f"data and settings ({metric} = {contenders[best]:g})",
        best,
    )


# --------------------------------------------------------------------------- peers

METRIC_TAG = "metric."  # version tag prefix: metric.recon.mse = "0.0123"


def metric_tag(version: ModelVersion, metric: str) -> float | None:
    """The version's ``metric.<metric>`` tag as a number; None when it is missing or not a
    number."""
    raw = (version.tags or {}).get(METRIC_TAG + metric)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        log.warning(
            "%s version %s: tag %s%s = %r is not a number; treated as missing",
            version.name,
            version.version,
            METRIC_TAG,
            metric,
            raw,
        )
        return None


@dataclass(frozen=True)
class NotCompared:
    version: int
    fingerprint: str | None  # its id, None when it has none
    reason: str

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "fingerprint": self.fingerprint, "reason": self.reason}


@dataclass(frozen=True)
class Peers:
    """The versions ``metric`` ranks against the current evaluation, and those it does not."""

    values: dict[int, float | None]  # peer version -> its metric tag (None: missing)
    pending: frozenset[int]  # peers registered where champion could not move, not yet competed
    not_compared: dict[int, NotCompared]

    def compared(self) -> list[int]:
        return sorted(self.values)

    def contenders(self, candidate: int, candidate_value: float) -> dict[int, float]:
        """The peers that may take champion now, with their values: ``candidate`` and every
        peer that has competed before and has a number."""
        found = {
            number: value
            for number, value in self.values.items()
            if number not in self.pending and value is not None and not math.isnan(value)
        }
        return found | {candidate: candidate_value}


def find_peers(versions: list[ModelVersion], current: Fingerprint, metric: str) -> Peers:
    """Sort ``versions`` into peers of ``current`` on ``metric`` and versions not compared."""
    values: dict[int, float | None] = {}
    pending = set()
    not_compared = {}
    for version in versions:
        number, tags = int(version.version), version.tags or {}
        tagged = of_tags(tags, f"{version.name} version {number}")
        reason = why_not_compared(current, tagged, metric)
        if reason is None:
            values[number] = metric_tag(version, metric)
            if tags.get(PENDING_TAG) == "true":
                pending.add(number)
        else:
            not_compared[number] = NotCompared(number, tagged.id, reason)
    return Peers(values, frozenset(pending), dict(sorted(not_compared.items())))
