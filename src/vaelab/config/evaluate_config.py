"""The ``evaluate:`` section of params.yaml: what ``evaluate@<variant>``, ``chain`` and
``compare`` measure and draw."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vaelab.config.section import Section

_TERM = re.compile(r"\s*([+-]?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*")


def parse_expression(expression: str) -> list[tuple[int, str]]:
    """``"a - b + c"`` → ``[(1, "a"), (-1, "b"), (1, "c")]``; a ValueError names what is wrong."""
    terms: list[tuple[int, str]] = []
    position = 0
    while position < len(expression):
        match = _TERM.match(expression, position)
        if match is None or (terms and not match.group(1)):
            raise ValueError(
                f"cannot read {expression!r} at character {position + 1}: "
                "write group names joined by + and -, "
                "e.g. 'smiling_woman - neutral_woman + neutral_man'"
            )
        terms.append((-1 if match.group(1) == "-" else 1, match.group(2)))
        position = match.end()
    if not terms:
        raise ValueError("empty expression: write group names joined by + and -")
    return terms


# Where evaluate's samples come from: normal, z ~ N(0, I) (the prior of a VAE; for an AE seed
# 003's test of whether it generates); gmm, the ex-post GMM saved with the model (train.gmm).
Sampler = Literal["normal", "gmm"]

# Study 003's r_limit values: rows of samples with z uniform in [-r, r].
STUDY003_RADII = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 5.0, 8.0]


class InterpolationConfig(Section):
    """Walks in latent space between pairs of test images."""

    pairs: int = Field(4, ge=1, description="Pairs of test images walked between.")
    steps: int = Field(8, ge=2, description="Images per walk, both ends included.")
    method: Literal["linear", "spherical"] = Field(
        "linear",
        description="linear: (1-t) z0 + t z1; spherical: slerp, which keeps the norm of "
        "Gaussian codes.",
    )


def _default_groups() -> dict[str, dict[str, Literal[0, 1]]]:
    """Study 001's four groups: smiling or not, woman or man."""
    return {
        "smiling_woman": {"Smiling": 1, "Male": 0},
        "neutral_woman": {"Smiling": 0, "Male": 0},
        "neutral_man": {"Smiling": 0, "Male": 1},
        "smiling_man": {"Smiling": 1, "Male": 1},
    }


class ArithmeticConfig(Section):
    """Latent arithmetic from attribute groups of the index (study 001).

    A group is the images whose index columns equal the given 0/1 values; its code is the
    mean latent of (up to ``images_per_group`` of) them. An expression adds and subtracts
    group names; ``expect`` names the group its result should look like, and the metrics
    record how close the decoded result is to that group's decoded mean.
    """

    groups: dict[str, dict[str, Literal[0, 1]]] = Field(
        default_factory=_default_groups,
        description="Group name -> {index column: 0 or 1}: the images whose columns equal "
        "those values.",
    )
    expressions: dict[str, str] = Field(
        default_factory=lambda: {"smiling_man": "smiling_woman - neutral_woman + neutral_man"},
        description="Expected group -> group names joined by + and -; the decoded result is "
        "measured against the expected group's decoded mean.",
    )
    images_per_group: int = Field(
        64, ge=1, description="At most this many images make a group's mean code."
    )

    @model_validator(mode="after")
    def _expressions_use_known_groups(self) -> ArithmeticConfig:
        for name, expression in self.expressions.items():
            for _sign, group in parse_expression(expression):
                if group not in self.groups:
                    raise ValueError(
                        f"expression {name!r} uses group {group!r}, which is not in groups "
                        f"({', '.join(self.groups) or 'none'})"
                    )
        return self


class SharpenConfig(Section):
    """Sharpening as post-processing (study 003): PIL's Sharpness and an unsharp mask."""

    factors: list[float] = Field(
        default_factory=lambda: [0.0, 3.0, 6.0, 7.0],
        description="PIL ImageEnhance.Sharpness factors (1 leaves an image unchanged).",
    )
    unsharp_radius: float = Field(1.0, gt=0.0, description="scikit-image unsharp_mask's radius.")
    unsharp_amount: float = Field(1.0, gt=0.0, description="scikit-image unsharp_mask's amount.")
    images: int = Field(
        256,
        ge=1,
        description="Reconstructions sharpened and measured (the first N of the test split): "
        "blur_effect is a per-image loop, so a CelebA-sized split would cost minutes.",
    )

    @field_validator("factors")
    @classmethod
    def _factors_non_negative(cls, factors: list[float]) -> list[float]:
        if not factors or any(f < 0 for f in factors):
            raise ValueError(
                "factors must be a non-empty list of numbers >= 0 (1 leaves an image unchanged)"
            )
        return factors


class ChainConfig(Section):
    """Study 000: a VAE's reconstructions fed through an AE ``passes`` times.

    ``vae`` and ``ae`` name variants of ``models:`` (checked when params load).
    """

    vae: str = Field(description="The variant whose reconstructions are fed in.")
    ae: str = Field(description="The variant they are fed through.")
    passes: int = Field(5, ge=1, description="Passes through the AE.")


class InceptionConfig(Section):
    """FID and KID of the samples and of the reconstructions against the test split, on
    Inception-v3's 2048 pool features (:mod:`vaelab.evaluate.fid`). The weights are never
    downloaded: without the file the two are recorded as not measured, saying where to put it.
    """

    enabled: bool = Field(
        True, description="false: FID and KID are recorded as not measured, without looking."
    )
    weights: str | None = Field(
        None,
        description="The weights file (pt_inception-2015-12-05-6726825d.pth; a relative path "
        "is taken from the project root); null: that file in torch's hub cache, "
        "torch.hub.get_dir()/checkpoints.",
    )
    kid_subsets: int = Field(
        100, ge=1, description="KID is the mean over this many random subsets."
    )
    kid_subset_size: int = Field(
        1000,
        ge=2,
        description="Images per KID subset (at most the smaller set's count).",
    )

    @field_validator("weights")
    @classmethod
    def _weights_name_a_file(cls, weights: str | None) -> str | None:
        if weights is not None and (not weights.strip() or weights.endswith(("/", "\\"))):
            raise ValueError(
                f"{weights!r} is no file name: name the weights file itself "
                "(pt_inception-2015-12-05-6726825d.pth), or null for torch's hub cache"
            )
        return weights


def _both_samplers() -> list[Sampler]:
    return ["normal", "gmm"]


class EvaluateConfig(Section):
    """The ``evaluate:`` section: what evaluate, chain and compare measure and draw."""

    batch_size: int = Field(
        256, gt=0, description="Test images per batch (memory, not numbers, depends on it)."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where the models run; auto: cuda, then mps, then cpu."
    )
    show: int = Field(8, ge=1, description="Test images in the reconstruction figures.")
    samples: int = Field(
        64, ge=2, description="Draws of each sampler for the sample metrics and figures."
    )
    sampler: list[Sampler] = Field(
        default_factory=_both_samplers,
        description="The samplers measured and drawn: normal, z ~ N(0, I) (metrics *.sample, "
        "samples.png; always included) and gmm, the ex-post GMM of train.gmm (*.sample_gmm, "
        "samples_gmm.png; for models saved with one).",
    )
    radii: list[float] = Field(
        default_factory=lambda: list(STUDY003_RADII),
        description="Study 003's r_limit values: rows of samples with z uniform in [-r, r].",
    )
    radius_samples: int = Field(8, ge=1, description="Images per radius row.")
    interpolation: InterpolationConfig = Field(
        InterpolationConfig(), description="Latent walks between test images."
    )
    arithmetic: ArithmeticConfig = Field(
        ArithmeticConfig(), description="Latent arithmetic on attribute groups (study 001)."
    )
    histogram_dims: int = Field(
        3, ge=1, description="Single latent dimensions drawn beside the pooled histogram."
    )
    sharpen: SharpenConfig = Field(
        SharpenConfig(), description="Sharpening as post-processing (study 003)."
    )
    active_threshold: float = Field(
        0.01,
        gt=0.0,
        description="A latent dimension is active when the variance of its encoder mean over "
        "the test set exceeds this.",
    )
    collapse_ratio: float = Field(
        0.1,
        gt=0.0,
        lt=1.0,
        description="The decoder is said to ignore z when reconstructions of different images "
        "vary less than this fraction of how much the images vary (study 002's symptom).",
    )
    chain: ChainConfig | None = Field(
        None,
        description="Study 000's chain of a VAE's output through an AE; null: no chain (the "
        "chain stage records why).",
    )
    inception: InceptionConfig = Field(
        InceptionConfig(), description="FID and KID on Inception-v3 features."
    )

    @field_validator("sampler")
    @classmethod
    def _normal_and_no_repeats(cls, sampler: list[str]) -> list[str]:
        if len(set(sampler)) != len(sampler):
            raise ValueError(
                f"names a sampler twice: {sampler}; list each of normal, gmm at most once"
            )
        if "normal" not in sampler:
            raise ValueError(
                f"must include normal (got {sampler}): the claims, tables and headline of every "
                "variant are about draws of N(0, I); write [normal, gmm] to measure the GMM's "
                "samples as well"
            )
        return sampler

    @field_validator("radii")
    @classmethod
    def _radii_positive(cls, radii: list[float]) -> list[float]:
        if not radii or any(r <= 0 for r in radii):
            raise ValueError("radii must be a non-empty list of numbers > 0")
        return radii
