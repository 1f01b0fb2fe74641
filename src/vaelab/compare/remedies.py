"""The remedies for blur, each measured against the plain VAE it changes.

A variant *applies* a remedy when its ``models:`` entry sets that remedy's knobs (a Gaussian
decoder, an MS-SSIM or focal-frequency term, a residual trunk, adversarial training, a
WAE / RAE latent penalty). Sample sharpness is compared for draws from N(0, I) and, where
both sides have one, from the ex-post Gaussian mixture fitted on the training codes. Its
**baseline** is a plain VAE among the variants: a variational ``vae_conv`` entry that
applies no remedy, with the same trunk and z — equal to the remedy's entry in every knob
the two share, except the remedy's own knobs (and, for the deterministic WAE / RAE, the KL
knobs a VAE has and they cannot). Every change is the remedy's mean minus the baseline's,
and its verdict is decided on their 95 % intervals, like the studies' claims: better or
worse when the intervals are apart, inconclusive when they overlap. Sharpness is decided
on the raw and the contrast-normalised Laplacian variance together; when the two disagree
the verdict is inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vaelab.compare.verdicts import HOLDS, NOT_HOLDS, higher, lower
from vaelab.stats.intervals import Estimate

# Knobs of a VAE's posterior that a deterministic autoencoder does not have.
KL_KNOBS = frozenset({"variational", "kl_weight", "kl_warmup_epochs", "free_bits"})


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

# What the remedies table reports: (dotted eval key, label, True when higher is better).
SHARPNESS_KEYS = {
    "recon": ("blur.laplacian_var.recon", "blur.laplacian_var_norm.recon"),
    "sample": ("blur.laplacian_var.sample", "blur.laplacian_var_norm.sample"),
    "gmm_sample": ("blur.laplacian_var.sample_gmm", "blur.laplacian_var_norm.sample_gmm"),
}
CHANGES: list[tuple[str, str, bool]] = [
    ("blur.laplacian_var.recon", "Lap var recon", True),
    ("blur.laplacian_var_norm.recon", "norm. sharp. recon", True),
    ("recon.mse", "MSE", False),
    ("blur.laplacian_var.sample", "Lap var sample", True),
    ("blur.laplacian_var_norm.sample", "norm. sharp. sample", True),
    # Samples of the ex-post Gaussian mixture on the training codes (evaluate.sampler: gmm),
    # both sides.
    ("blur.laplacian_var.sample_gmm", "Lap var GMM sample", True),
    ("blur.laplacian_var_norm.sample_gmm", "norm. sharp. GMM sample", True),
]
# How a verdict is written in metrics/compare.json: better 1, inconclusive 0, worse -1.
VERDICT_SCORE = {"better": 1, "inconclusive": 0, "worse": -1}


@dataclass(frozen=True)
class Change:
    """One metric of a remedy against its baseline, and the verdict on their intervals."""

    key: str
    label: str
    remedy: Estimate
    baseline: Estimate
    verdict: str  # "better", "worse" or "inconclusive"

    @property
    def delta(self) -> float:
        """The remedy's mean minus the baseline's."""
        return self.remedy.mean - self.baseline.mean


@dataclass(frozen=True)
class RemedyComparison:
    """A variant that applies remedies, against its plain VAE when there is one."""

    variant: str
    remedies: tuple[Remedy, ...]
    baseline: str | None  # None: no plain VAE with the same trunk and z among the variants
    changes: tuple[Change, ...]
    # "recon_sharpness", "mse", "sample_sharpness" (+ fid / kid) -> verdict
    verdicts: dict[str, str]
    reason: str = ""  # why there is no baseline


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
        ignored |= KL_KNOBS
    for name, candidate in plain.items():
        shared = (entry.keys() & candidate.keys()) - ignored
        if {"z_dim", "filters"} <= shared and all(entry[k] == candidate[k] for k in shared):
            return name
    return None


def _verdict(remedy: Estimate, baseline: Estimate, higher_is_better: bool) -> str:
    outcome = (higher if higher_is_better else lower)(remedy, baseline)
    return {HOLDS: "better", NOT_HOLDS: "worse"}.get(outcome, "inconclusive")


def _joint(verdicts: Sequence[str]) -> str:
    """One verdict from both sharpness measures: theirs when they agree, else inconclusive."""
    return verdicts[0] if len(set(verdicts)) == 1 else "inconclusive"


def compare_remedies(
    entries: dict[str, dict[str, Any]], estimates: dict[str, dict[str, Estimate]]
) -> list[RemedyComparison]:
    """Every variant that applies a remedy, against its baseline. ``entries``: each variant's
    ``models:`` entry dumped; ``estimates``: each variant's dotted metric key -> Estimate."""
    plain = {name: entry for name, entry in entries.items() if is_plain_vae(entry)}
    comparisons = []
    for name, entry in entries.items():
        remedies = applied(entry)
        if not remedies:
            continue
        base = baseline_for(entry, remedies, plain)
        if base is None:
            comparisons.append(
                RemedyComparison(
                    name,
                    remedies,
                    None,
                    (),
                    {},
                    reason=(
                        "no plain VAE (vae_conv, variational, no remedy) with the same trunk, "
                        "z and other knobs among the variants"
                    ),
                )
            )
            continue
        ours, theirs = estimates[name], estimates[base]
        changes = tuple(
            Change(key, label, ours[key], theirs[key], _verdict(ours[key], theirs[key], better))
            for key, label, better in CHANGES
            if key in ours and key in theirs
        )
        by_key = {c.key: c.verdict for c in changes}
        verdicts = {}
        for what, keys in SHARPNESS_KEYS.items():
            if all(k in by_key for k in keys):
                verdicts[f"{what}_sharpness"] = _joint([by_key[k] for k in keys])
        if "recon.mse" in by_key:
            verdicts["mse"] = by_key["recon.mse"]
        comparisons.append(RemedyComparison(name, remedies, base, changes, verdicts))
    return comparisons


def verdict_scores(comparisons: Sequence[RemedyComparison]) -> dict[str, dict[str, int]]:
    """``{variant: {"recon_sharpness": 1, "mse": -1, ...}}`` for metrics/compare.json."""
    return {
        c.variant: {k: VERDICT_SCORE[v] for k, v in c.verdicts.items()}
        for c in comparisons
        if c.verdicts
    }


__all__ = [
    "REMEDIES",
    "Change",
    "Remedy",
    "RemedyComparison",
    "applied",
    "baseline_for",
    "compare_remedies",
    "is_plain_vae",
    "verdict_scores",
]
