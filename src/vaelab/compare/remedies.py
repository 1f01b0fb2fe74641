"""The remedies for blur, each measured against the plain VAE it changes.

A variant *applies* a remedy when its ``models:`` entry sets that remedy's knobs (a Gaussian
decoder, an MS-SSIM or focal-frequency term, a residual trunk, adversarial training, a
WAE / RAE latent penalty). Sample sharpness is compared for draws from N(0, I) and, where
both sides have one, from the ex-post Gaussian mixture fitted on the training codes. Its
**baseline** is a plain VAE among the variants: a variational ``vae_conv`` entry that
applies no remedy, with the same trunk and z — equal to the remedy's entry in every knob
the two share, except the remedy's own knobs (and, for the deterministic WAE / RAE, the KL
knobs a VAE has and they cannot). Every verdict is a paired comparison of the remedy
against its baseline (:mod:`vaelab.compare.comparisons`): reconstructions and MSE paired on
the same test images, samples unpaired; better or worse when the interval of the difference
excludes zero, at the Bonferroni level of the whole remedies table. Sharpness is decided on
the Laplacian variance and the half-power frequency together; when the two disagree the
verdict is inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vaelab.compare.comparisons import (
    SHARPNESS_MEASURES,
    Comparison,
    Direction,
    Measurements,
    Side,
    compare,
)
from vaelab.compare.verdicts import HOLDS, NOT_HOLDS
from vaelab.config.model_config import POSTERIOR_KNOBS
from vaelab.stats.paired import family_level


@dataclass(frozen=True)
class Remedy:
    """A remedy for blur: how to tell that an entry applies it, and its own knobs."""

    key: str
    label: str
    paper: str
    applies: Callable[[dict[str, Any]], bool]  # on an entry's model_dump(mode="json")
    # The entry keys that make the remedy (left out when matching the baseline).
    knobs: frozenset[str]
    deterministic: bool = False  # an AE with a latent penalty: the KL knobs are not compared


def _positive(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: float(entry.get(key) or 0.0) > 0.0


REMEDIES: list[Remedy] = [
    Remedy(
        "sigma_vae",
        "calibrated Gaussian decoder (σ-VAE)",
        "Rybkin, Daniilidis and Levine 2021",
        lambda e: e.get("recon_loss") == "gaussian",
        frozenset({"recon_loss", "sigma"}),
    ),
    Remedy(
        "msssim",
        "MS-SSIM reconstruction term",
        "Wang, Simoncelli and Bovik 2003; Pythae's MSSSIM_VAE",
        _positive("msssim_weight"),
        frozenset({"msssim_weight"}),
    ),
    Remedy(
        "ffl",
        "focal frequency loss",
        "Jiang, Dai, Wu and Loy 2021",
        _positive("ffl_weight"),
        frozenset({"ffl_weight", "ffl_alpha"}),
    ),
    Remedy(
        "resnet",
        "residual trunk",
        "study 003's third reason for blur",
        lambda e: e.get("trunk") == "resnet",
        frozenset({"trunk"}),
    ),
    Remedy(
        "vae_gan",
        "adversarial training (VAE-GAN)",
        "Larsen, Sønderby, Larochelle and Winther 2016",
        lambda e: e.get("arch") == "vae_gan",
        frozenset(
            {
                "discriminator",
                "feature_layer",
                "feature_weight",
                "adversarial_weight",
                "discriminator_lr",
                "recon_weight",
            }
        ),
    ),
    Remedy(
        "wae_mmd",
        "Wasserstein AE, MMD penalty (WAE-MMD)",
        "Tolstikhin, Bousquet, Gelly and Schölkopf 2018",
        _positive("mmd_weight"),
        frozenset({"mmd_weight"}),
        deterministic=True,
    ),
    Remedy(
        "rae",
        "regularised deterministic AE (RAE)",
        "Ghosh, Sajjadi, Vergari, Black and Schölkopf 2020",
        lambda e: (
            float(e.get("latent_norm_weight") or 0.0) > 0.0
            or e.get("decoder_reg", "none") != "none"
        ),
        frozenset({"latent_norm_weight", "decoder_reg", "decoder_reg_weight"}),
        deterministic=True,
    ),
]

# Each verdict of a remedy against its baseline: (set compared, measures, better when).
VERDICTS: dict[str, tuple[str, tuple[str, ...], Direction]] = {
    "recon_sharpness": ("recon", tuple(SHARPNESS_MEASURES), "higher"),
    "mse": ("recon", ("mse",), "lower"),
    "sample_sharpness": ("sample", tuple(SHARPNESS_MEASURES), "higher"),
    "gmm_sample_sharpness": ("sample_gmm", tuple(SHARPNESS_MEASURES), "higher"),
}
# How a verdict is written in metrics/compare.json: better 1, inconclusive 0, worse -1.
VERDICT_SCORE = {"better": 1, "inconclusive": 0, "worse": -1}


@dataclass(frozen=True)
class RemedyComparison:
    """A variant that applies remedies, against its plain VAE when there is one."""

    variant: str
    remedies: tuple[Remedy, ...]
    baseline: str | None  # None: no plain VAE with the same trunk and z among the variants
    comparisons: dict[str, Comparison]  # VERDICTS key -> the paired comparison
    reason: str = ""  # why there is no baseline

    @property
    def verdicts(self) -> dict[str, str]:
        """VERDICTS key -> "better", "worse", "inconclusive" or "collapsed"."""
        words = {HOLDS: "better", NOT_HOLDS: "worse"}
        return {
            name: words.get(c.outcome, "collapsed" if c.outcome == "collapsed" else "inconclusive")
            for name, c in self.comparisons.items()
        }


def applied(entry: dict[str, Any]) -> tuple[Remedy, ...]:
    """The remedies that a dumped ``models:`` entry applies."""
    return tuple(r for r in REMEDIES if r.applies(entry))


def is_plain_vae(entry: dict[str, Any]) -> bool:
    """Whether the entry is a variational ``vae_conv`` that applies no remedy."""
    return entry.get("arch") == "vae_conv" and bool(entry.get("variational")) and not applied(entry)


def baseline_for(
    entry: dict[str, Any], remedies: Sequence[Remedy], plain: dict[str, dict[str, Any]]
) -> str | None:
    """The first plain VAE equal to ``entry`` in every shared knob but the remedies' own (and
    the KL knobs for a deterministic remedy); None when there is none."""
    ignored = {"arch"}.union(*(r.knobs for r in remedies))
    if any(r.deterministic for r in remedies):
        ignored |= POSTERIOR_KNOBS
    for name, candidate in plain.items():
        shared = (entry.keys() & candidate.keys()) - ignored
        if {"z_dim", "filters"} <= shared and all(entry[k] == candidate[k] for k in shared):
            return name
    return None


NO_BASELINE = (
    "no plain VAE (vae_conv, variational, no remedy) with the same trunk, z and other knobs "
    "among the variants"
)


def _planned(
    entries: dict[str, dict[str, Any]], data: Measurements
) -> list[tuple[str, tuple[Remedy, ...], str | None, list[str]]]:
    """(variant, remedies, baseline, the verdicts both sides can be measured on)."""
    plain = {name: entry for name, entry in entries.items() if is_plain_vae(entry)}
    planned = []
    for name, entry in entries.items():
        remedies = applied(entry)
        if not remedies:
            continue
        base = baseline_for(entry, remedies, plain)
        names = [
            verdict
            for verdict, (source, measures, _better) in VERDICTS.items()
            if base is not None
            and all(data.has(Side(v, source), measures[0]) for v in (name, base))
        ]
        planned.append((name, remedies, base, names))
    return planned


def compare_remedies(
    entries: dict[str, dict[str, Any]], data: Measurements, *, seed: int = 0
) -> list[RemedyComparison]:
    """Every variant that applies a remedy, against its baseline. ``entries``: each variant's
    ``models:`` entry dumped; ``data``: the per-image measurements. The whole table is one
    family: each verdict at level 1 − 0.05 / (its number of verdicts)."""
    planned = _planned(entries, data)
    total = sum(len(names) for *_rest, names in planned)
    level = family_level(max(total, 1))
    out = []
    for name, remedies, base, names in planned:
        if base is None:
            out.append(RemedyComparison(name, remedies, None, {}, reason=NO_BASELINE))
            continue
        comparisons = {}
        for verdict in names:
            source, measures, better = VERDICTS[verdict]
            comparisons[verdict] = compare(
                data,
                f"{name} vs {base} ({verdict.replace('_', ' ')})",
                Side(name, source),
                Side(base, source),
                measures,
                better,
                level=level,
                seed=seed,
            )
        out.append(RemedyComparison(name, remedies, base, comparisons))
    return out


def verdict_scores(comparisons: Sequence[RemedyComparison]) -> dict[str, dict[str, int]]:
    """``{variant: {"recon_sharpness": 1, "mse": -1, ...}}`` for metrics/compare.json (a
    collapsed comparison is left out)."""
    scores = {
        c.variant: {k: VERDICT_SCORE[v] for k, v in c.verdicts.items() if v in VERDICT_SCORE}
        for c in comparisons
    }
    return {variant: scored for variant, scored in scores.items() if scored}


__all__ = [
    "REMEDIES",
    "Remedy",
    "RemedyComparison",
    "applied",
    "baseline_for",
    "compare_remedies",
    "is_plain_vae",
    "verdict_scores",
]
