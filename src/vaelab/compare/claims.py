"""The studies' claims about blur, each one function of the evaluated variants returning a
:class:`~vaelab.compare.verdicts.Claim` with its paired comparisons and their counts.

Every claim names the variants it compares, and compares only variants that differ in the
factor it is about: a VAE with the AE of its very own encoder, decoder and z; VAEs of one
latent-size family; VAEs of one KL-weight family. Sharpness comparisons are decided on the
Laplacian variance and the spectral half-power frequency together
(:mod:`vaelab.compare.comparisons`); each claim's k comparisons at level 1 − 0.05 / k. A
claim the variants at hand cannot test is "not measured", with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from vaelab.compare.comparisons import (
    SHARPNESS_MEASURES,
    Comparison,
    Direction,
    Measurements,
    Side,
    compare,
)
from vaelab.compare.families import find_families
from vaelab.compare.verdicts import Claim, not_measured
from vaelab.config.model_config import POSTERIOR_KNOBS
from vaelab.stats.intervals import Estimate
from vaelab.stats.paired import family_level

SHARPNESS = tuple(SHARPNESS_MEASURES)


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


# A pair to compare: the two sides and the comparison's label.
Pair = tuple[Side, Side, str]
ClaimCheck = Callable[[Sequence[Evaluated], Measurements, int], Claim]


def decide(
    key: str,
    text: str,
    pairs: Sequence[Pair],
    data: Measurements,
    *,
    expected: Direction,
    measures: Sequence[str] = SHARPNESS,
    seed: int = 0,
) -> Claim:
    """The claim that, in every pair, the first side is ``expected`` than the second on every
    measure; each pair decided at the family's Bonferroni level."""
    level = family_level(len(pairs))
    comparisons: list[Comparison] = [
        compare(data, label, a, b, measures, expected, level=level, seed=seed)
        for a, b, label in pairs
    ]
    return Claim(key, text, tuple(comparisons))


def _with(data: Measurements, variants: Sequence[Evaluated], source: str) -> list[Evaluated]:
    return [v for v in variants if data.has(Side(v.name, source), "laplacian_var")]


def recon_blurrier_than_inputs(
    variants: Sequence[Evaluated], data: Measurements, seed: int
) -> Claim:
    """Every variant's reconstructions against its own test images (paired)."""
    pairs = [
        (Side(v.name, "recon"), Side(v.name, "input"), f"{v.name}: reconstructions vs inputs")
        for v in _with(data, variants, "recon")
    ]
    return decide(
        "recon_blur",
        "Reconstructions are blurrier than the test images they reconstruct",
        pairs,
        data,
        expected="lower",
        seed=seed,
    )


def samples_blurrier_than_inputs(
    variants: Sequence[Evaluated], data: Measurements, seed: int
) -> Claim:
    """Every variant's prior samples against the test images (unpaired)."""
    key, text = "sample_blur", "Decoded prior samples z ~ N(0, I) are blurrier than the test images"
    pairs = [
        (Side(v.name, "sample"), Side(v.name, "input"), f"{v.name}: samples vs test images")
        for v in _with(data, variants, "sample")
    ]
    if not pairs:
        return not_measured(key, text, "no variant has decoded samples")
    return decide(key, text, pairs, data, expected="lower", seed=seed)


def _without(config: BaseModel, knobs: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in knobs}


def vae_blurrier_than_its_ae(variants: Sequence[Evaluated], data: Measurements, seed: int) -> Claim:
    """Each VAE against every AE equal to it but for the posterior knobs (paired)."""
    key = "vae_vs_ae"
    text = (
        "A VAE's reconstructions are blurrier than those of a deterministic AE with the same "
        "encoder, decoder and z"
    )
    vaes = [v for v in variants if v.variational]
    aes = [
        v for v in variants if not v.variational and "variational" in type(v.config).model_fields
    ]
    pairs = [
        (
            Side(vae.name, "recon"),
            Side(ae.name, "recon"),
            f"{vae.name} vs {ae.name} (z {vae.latent_dim})",
        )
        for vae in vaes
        for ae in aes
        if _without(vae.config, POSTERIOR_KNOBS) == _without(ae.config, POSTERIOR_KNOBS)
    ]
    if not pairs:
        return not_measured(
            key, text, "needs a VAE and a vae_conv entry with the same knobs and variational: false"
        )
    return decide(key, text, pairs, data, expected="lower", seed=seed)


def _family_pairs(variants: Sequence[Evaluated], knob: str) -> list[Pair]:
    """Along every family of VAEs differing only in ``knob``: each member vs the next."""
    by_name = {v.name: v for v in variants if v.variational}
    families = [
        f for f in find_families({n: v.config for n, v in by_name.items()}) if f.knob == knob
    ]
    return [
        (
            Side(a, "recon"),
            Side(b, "recon"),
            f"{a} ({knob} {getattr(by_name[a].config, knob)}) vs "
            f"{b} ({knob} {getattr(by_name[b].config, knob)})",
        )
        for family in families
        for a, b in zip(family.variants, family.variants[1:], strict=False)
    ]


def smaller_latent_blurrier(variants: Sequence[Evaluated], data: Measurements, seed: int) -> Claim:
    """Along each z_dim family of VAEs, each member against the next larger (paired)."""
    key, text = (
        "small_z",
        "A VAE with a smaller latent is blurrier than the same VAE with a larger one",
    )
    pairs = _family_pairs(variants, "z_dim")
    if not pairs:
        return not_measured(key, text, "needs two or more VAEs that differ in z_dim alone")
    return decide(key, text, pairs, data, expected="lower", seed=seed)


def larger_kl_weight_blurrier(
    variants: Sequence[Evaluated], data: Measurements, seed: int
) -> Claim:
    """Along each kl_weight family of VAEs, each member against the next larger (paired):
    the smaller weight's reconstructions are the sharper."""
    key, text = (
        "big_kl",
        "A VAE with a larger KL weight is blurrier than the same VAE with a smaller one",
    )
    pairs = _family_pairs(variants, "kl_weight")
    if not pairs:
        return not_measured(key, text, "needs two or more VAEs that differ in kl_weight alone")
    return decide(key, text, pairs, data, expected="higher", seed=seed)


def strongest_pil(data: Measurements, variant: str) -> str | None:
    """The set of a variant's strongest PIL sharpening (``sharpened_pil_7``), if any."""
    factors = [
        source
        for (name, source, measure) in data.groups()
        if name == variant and source.startswith("sharpened_pil_") and measure == "mse"
    ]
    return max(
        factors,
        key=lambda s: float(s.removeprefix("sharpened_pil_").replace("_", ".")),
        default=None,
    )


def _sharpened_pairs(variants: Sequence[Evaluated], data: Measurements) -> list[Pair]:
    pairs = []
    for v in variants:
        strongest = strongest_pil(data, v.name)
        if strongest is not None:
            factor = strongest.removeprefix("sharpened_")
            pairs.append(
                (Side(v.name, strongest), Side(v.name, "sharpened_none"), f"{v.name} ({factor})")
            )
    return pairs


def sharpening_raises_sharpness(
    variants: Sequence[Evaluated], data: Measurements, seed: int
) -> Claim:
    """Each variant's reconstructions after its strongest PIL sharpening against before."""
    key, text = "sharpen", "Sharpening the reconstructions (PIL Sharpness) makes them sharper"
    pairs = _sharpened_pairs(variants, data)
    if not pairs:
        return not_measured(key, text, "evaluate.sharpen.factors has no factor")
    return decide(key, text, pairs, data, expected="higher", seed=seed)


def sharpening_brings_closer(variants: Sequence[Evaluated], data: Measurements, seed: int) -> Claim:
    """The MSE to the inputs after each variant's strongest PIL sharpening against before."""
    key, text = "sharpen_mse", "Sharpened reconstructions are closer to their inputs (lower MSE)"
    pairs = _sharpened_pairs(variants, data)
    if not pairs:
        return not_measured(key, text, "evaluate.sharpen.factors has no factor")
    return decide(key, text, pairs, data, expected="lower", measures=("mse",), seed=seed)


CLAIMS: list[ClaimCheck] = [
    recon_blurrier_than_inputs,
    samples_blurrier_than_inputs,
    vae_blurrier_than_its_ae,
    smaller_latent_blurrier,
    larger_kl_weight_blurrier,
    sharpening_raises_sharpness,
    sharpening_brings_closer,
]
