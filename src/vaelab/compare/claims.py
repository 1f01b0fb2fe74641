"""The studies' claims about blur, each one function of the evaluated variants returning a
:class:`~vaelab.compare.verdicts.Claim` decided on 95 % intervals over seeds and test images.

Every claim names the variants it compares, and compares only variants that differ in the
factor it is about: a VAE with the AE of its very own encoder, decoder and z; VAEs of one
latent-size family; VAEs of one KL-weight family. Sharpness claims are decided on both the
raw Laplacian variance and the contrast-normalised one (Laplacian variance over intensity
variance); when the two disagree the claim is inconclusive and says so. A claim the
variants at hand cannot test is "not measured", with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from vaelab.compare.families import find_families
from vaelab.compare.verdicts import (
    INCONCLUSIVE,
    NOT_HOLDS,
    NOT_MEASURED,
    Claim,
    Outcome,
    every,
    higher,
    lower,
    not_measured,
)
from vaelab.stats.intervals import Estimate

# The two sharpness measures every sharpness claim is decided on.
SHARPNESS = {
    "laplacian_var": "Laplacian variance",
    "laplacian_var_norm": "contrast-normalised sharpness",
}
# Knobs of a VAE's loss that its deterministic twin (variational: false) cannot have.
POSTERIOR_KNOBS = frozenset({"variational", "kl_weight", "kl_warmup_epochs", "free_bits"})


@dataclass(frozen=True)
class Evaluated:
    """One variant as compare sees it: its params entry and what evaluate measured."""

    name: str
    config: BaseModel  # the models: entry, every default filled in
    variational: bool
    latent_dim: int
    # dotted metric key -> mean, sd and interval over seeds and images
    estimates: dict[str, Estimate]

    def get(self, key: str) -> Estimate:
        """The estimate of a dotted metric key; a KeyError saying what to rerun when absent."""
        try:
            return self.estimates[key]
        except KeyError:
            raise KeyError(
                f"{self.name}: metrics/eval/{self.name}.json has no interval for {key!r}; "
                f"rerun `dvc repro evaluate@{self.name}`"
            ) from None


ClaimCheck = Callable[[Sequence[Evaluated]], Claim]


def _n(estimate: Estimate) -> str:
    return f"n = {estimate.seeds} seed(s) × {estimate.images}"


def _decide(outcomes: dict[str, Outcome]) -> tuple[Outcome, str]:
    """One outcome from the same comparison on both sharpness measures."""
    values = set(outcomes.values())
    if len(values) == 1:
        return values.pop(), ""
    said = ", ".join(f"the {SHARPNESS[m]} says {o}" for m, o in outcomes.items())
    return INCONCLUSIVE, f" The two measures disagree ({said})."


def _sharpness_pairs(
    key: str,
    text: str,
    pairs: list[tuple[Evaluated, str, Evaluated, str]],
    compare: Callable[[Estimate, Estimate], Outcome],
    what: Callable[[Evaluated, Evaluated], str],
) -> Claim:
    """A claim that, for every pair, the first's ``<metric>.<a>`` is ``compare``d to the
    second's ``<metric>.<b>``.

    ``pairs``: ``(first, source_a, second, source_b)`` with sources ``input`` / ``recon`` /
    ``sample`` of the ``blur.<metric>.<source>`` keys.
    """
    per_measure: dict[str, list[Outcome]] = {m: [] for m in SHARPNESS}
    lines, per_pair = [], []
    for first, a, second, b in pairs:
        parts, outcomes = [], {}
        for metric in SHARPNESS:
            x, y = first.get(f"blur.{metric}.{a}"), second.get(f"blur.{metric}.{b}")
            outcomes[metric] = compare(x, y)
            per_measure[metric].append(outcomes[metric])
            parts.append(f"{SHARPNESS[metric]} {x.shown()} vs {y.shown()} ({outcomes[metric]})")
        per_pair.append(_decide(outcomes)[0])
        lines.append(
            f"{what(first, second)}: "
            + "; ".join(parts)
            + f", {_n(first.get(f'blur.laplacian_var.{a}'))}"
        )
    outcome, disagreement = _decide({m: every(outcomes) for m, outcomes in per_measure.items()})
    variants = tuple(
        dict.fromkeys(v.name for first, _a, second, _b in pairs for v in (first, second))
    )
    return Claim(
        key, text, outcome, variants, _tally(per_pair) + " " + "; ".join(lines) + "." + disagreement
    )


def _tally(outcomes: list[Outcome]) -> str:
    """``Of 9 comparisons: 7 hold, 2 inconclusive.``: how a claim's comparisons came out."""
    counts = {o: outcomes.count(o) for o in ("holds", NOT_HOLDS, INCONCLUSIVE) if o in outcomes}
    words = {"holds": "hold", NOT_HOLDS: "do not hold", INCONCLUSIVE: "inconclusive"}
    return (
        f"Of {len(outcomes)} comparison(s): "
        + ", ".join(f"{n} {words[o]}" for o, n in counts.items())
        + "."
    )


def recon_blurrier_than_inputs(variants: Sequence[Evaluated]) -> Claim:
    """Every variant's reconstructions against its own test images."""
    return _sharpness_pairs(
        "recon_blurrier_than_inputs",
        "Reconstructions are blurrier than the test images they reconstruct",
        [(v, "recon", v, "input") for v in variants],
        lower,
        lambda v, _same: f"{v.name} reconstructions vs inputs",
    )


def samples_blurrier_than_inputs(variants: Sequence[Evaluated]) -> Claim:
    """Every variant's prior samples against the test images."""
    return _sharpness_pairs(
        "samples_blurrier_than_inputs",
        "Decoded prior samples z ~ N(0, I) are blurrier than the test images",
        [(v, "sample", v, "input") for v in variants],
        lower,
        lambda v, _same: f"{v.name} samples vs test images",
    )


def _without(config: BaseModel, knobs: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in knobs}


def vae_blurrier_than_its_ae(variants: Sequence[Evaluated]) -> Claim:
    """Each VAE against every AE equal to it but for the posterior knobs."""
    key, text = (
        "vae_blurrier_than_same_bottleneck_ae",
        (
            "A VAE's reconstructions are blurrier than those of a deterministic AE with the same "
            "encoder, decoder and z"
        ),
    )
    vaes = [v for v in variants if v.variational]
    aes = [
        v for v in variants if not v.variational and "variational" in type(v.config).model_fields
    ]
    pairs = [
        (vae, "recon", ae, "recon")
        for vae in vaes
        for ae in aes
        if _without(vae.config, POSTERIOR_KNOBS) == _without(ae.config, POSTERIOR_KNOBS)
    ]
    if not pairs:
        return not_measured(
            key, text, "needs a VAE and a vae_conv entry with the same knobs and variational: false"
        )
    return _sharpness_pairs(
        key, text, pairs, lower, lambda vae, ae: f"{vae.name} vs {ae.name} (z {vae.latent_dim})"
    )


def _family_claim(
    key: str,
    text: str,
    knob: str,
    variants: Sequence[Evaluated],
    compare: Callable[[Estimate, Estimate], Outcome],
    reason: str,
) -> Claim:
    """Along every family of VAEs differing only in ``knob``: each member vs the next, by knob
    value."""
    by_name = {v.name: v for v in variants if v.variational}
    families = [
        f for f in find_families({n: v.config for n, v in by_name.items()}) if f.knob == knob
    ]
    if not families:
        return not_measured(key, text, reason)
    pairs = [
        (by_name[a], "recon", by_name[b], "recon")
        for family in families
        for a, b in zip(family.variants, family.variants[1:], strict=False)
    ]
    return _sharpness_pairs(
        key,
        text,
        pairs,
        compare,
        lambda a, b: (
            f"{a.name} ({knob} {getattr(a.config, knob)}) vs {b.name} "
            f"({knob} {getattr(b.config, knob)})"
        ),
    )


def smaller_latent_blurrier(variants: Sequence[Evaluated]) -> Claim:
    """Along each z_dim family of VAEs, each member against the next larger."""
    return _family_claim(
        "smaller_latent_blurrier",
        "A VAE with a smaller latent is blurrier than the same VAE with a larger one",
        "z_dim",
        variants,
        lower,
        "needs two or more VAEs that differ in z_dim alone",
    )


def larger_kl_weight_blurrier(variants: Sequence[Evaluated]) -> Claim:
    """Along each kl_weight family of VAEs, each member against the next larger."""
    return _family_claim(
        "larger_kl_weight_blurrier",
        "A VAE with a larger KL weight is blurrier than the same VAE with a smaller one",
        "kl_weight",
        variants,
        higher,
        "needs two or more VAEs that differ in kl_weight alone",
    )


def _strongest_pil(variant: Evaluated) -> str | None:
    factors = [
        k.split(".")[1]
        for k in variant.estimates
        if k.startswith("sharpen.pil_") and k.endswith(".mse")
    ]
    return max(factors, key=lambda k: float(k.removeprefix("pil_").replace("_", ".")), default=None)


def sharpening_raises_sharpness(variants: Sequence[Evaluated]) -> Claim:
    """Each variant's reconstructions before and after its strongest PIL sharpening."""
    key, text = (
        "sharpening_raises_sharpness",
        "Sharpening the reconstructions (PIL Sharpness) makes them sharper",
    )
    measured = [(v, _strongest_pil(v)) for v in variants if _strongest_pil(v)]
    if not measured:
        return not_measured(key, text, "evaluate.sharpen.factors has no factor")
    per_measure: dict[str, list[Outcome]] = {m: [] for m in SHARPNESS}
    lines = []
    for v, factor in measured:
        parts = []
        for metric in SHARPNESS:
            before, after = v.get(f"sharpen.none.{metric}"), v.get(f"sharpen.{factor}.{metric}")
            outcome = higher(after, before)
            per_measure[metric].append(outcome)
            parts.append(f"{SHARPNESS[metric]} {before.shown()} → {after.shown()} ({outcome})")
        lines.append(
            f"{v.name} ({factor}): "
            + "; ".join(parts)
            + f", {_n(v.get('sharpen.none.laplacian_var'))}"
        )
    outcome, disagreement = _decide({m: every(o) for m, o in per_measure.items()})
    per_variant = [
        _decide({m: per_measure[m][i] for m in SHARPNESS})[0] for i in range(len(measured))
    ]
    return Claim(
        key,
        text,
        outcome,
        tuple(v.name for v, _f in measured),
        _tally(per_variant) + " " + "; ".join(lines) + "." + disagreement,
    )


def sharpening_brings_closer(variants: Sequence[Evaluated]) -> Claim:
    """The MSE to the inputs before and after each variant's strongest PIL sharpening."""
    key, text = (
        "sharpening_brings_closer",
        "Sharpened reconstructions are closer to their inputs (lower MSE)",
    )
    measured = [(v, _strongest_pil(v)) for v in variants if _strongest_pil(v)]
    if not measured:
        return not_measured(key, text, "evaluate.sharpen.factors has no factor")
    outcomes, lines = [], []
    for v, factor in measured:
        before, after = v.get("sharpen.none.mse"), v.get(f"sharpen.{factor}.mse")
        sharper = v.get(f"sharpen.{factor}.laplacian_var").mean / max(
            v.get("sharpen.none.laplacian_var").mean, 1e-12
        )
        outcome = lower(after, before)
        outcomes.append(outcome)
        direction = "closer to" if after.mean < before.mean else "farther from"
        lines.append(
            f"{v.name} ({factor}): Laplacian variance ×{sharper:.2f}, "
            f"MSE {before.shown()} → {after.shown()}, "
            f"{direction} the input by {abs(after.mean - before.mean):.3g} ({outcome}), "
            f"{_n(before)}"
        )
    return Claim(
        key,
        text,
        every(outcomes),
        tuple(v.name for v, _f in measured),
        _tally(outcomes) + " " + "; ".join(lines) + ".",
    )


CLAIMS: list[ClaimCheck] = [
    recon_blurrier_than_inputs,
    samples_blurrier_than_inputs,
    vae_blurrier_than_its_ae,
    smaller_latent_blurrier,
    larger_kl_weight_blurrier,
    sharpening_raises_sharpness,
    sharpening_brings_closer,
]


def summary(claims: Sequence[Claim]) -> dict[Outcome, list[Claim]]:
    """The claims grouped by outcome, in a fixed order of outcomes."""
    order: list[Outcome] = ["holds", NOT_HOLDS, INCONCLUSIVE, NOT_MEASURED]
    return {outcome: [c for c in claims if c.outcome == outcome] for outcome in order}
