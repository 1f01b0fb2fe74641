"""``reports/compare_detail.md``: every number behind ``reports/compare.md`` — how a
comparison is decided, each claim's comparisons with their differences, ratios, intervals and
n, the full variant table, the one-knob sweeps, the remedies' comparisons, FID / KID,
posterior collapse, anomaly detection and the image figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from vaelab.compare.families import Family
from vaelab.compare.remedies import RemedyComparison
from vaelab.compare.verdicts import Claim
from vaelab.config import Params
from vaelab.measures.headline import compare_table

if TYPE_CHECKING:
    from vaelab.compare.variants import Variant

# The variant table's columns: (dotted eval key, label, format), from measures.headline.
TABLE = [(m.detail, m.label, m.fmt) for m in compare_table()]


def _cell(variant: Variant, key: str, fmt: str) -> str:
    value, sd = variant.value(key), variant.sd(key)
    if value is None:
        return ""
    return f"{value:{fmt}}" if not sd else f"{value:{fmt}} ± {sd:.2g}"


def _code(variant: Variant, pixels: int) -> str:
    size = variant.evaluated.latent_dim
    return f"{size:,} (> {pixels:,} pixels)" if size > pixels else f"{size:,}"


def variant_table(variants: Sequence[Variant], pixels: int) -> str:
    """The variants table: the test images' sharpness first, then one row per variant."""
    first = variants[0]
    reference = {"variant": "test images (inputs)", "kind": "", "code size": "", "seeds": ""}
    reference |= {label: "" for _key, label, _fmt in TABLE} | {"params": "", "train s": ""}
    reference["Lap var recon"] = _cell(first, "blur.laplacian_var.input", ".4g")
    reference["norm. sharp. recon"] = _cell(first, "blur.laplacian_var_norm.input", ".3g")
    rows = [reference]
    for v in variants:
        row = {
            "variant": v.name,
            "kind": "VAE" if v.evaluated.variational else "AE",
            "code size": _code(v, pixels),
            "seeds": str(v.evaluation["images"]["seeds"]),
        }
        row |= {label: _cell(v, key, fmt) for key, label, fmt in TABLE}
        params = v.training.get("trainable_params")
        row["params"] = f"{params:,}" if params is not None else ""
        seconds = v.training.get("seconds")
        row["train s"] = f"{seconds:.0f}" if seconds is not None else ""
        rows.append(row)
    return _markdown(rows)


def _markdown(rows: list[dict[str, str]]) -> str:
    """The rows as a Markdown table, one column per key."""
    table: str = pd.DataFrame(rows).to_markdown(index=False)
    return table


# FID and KID (evaluate.inception), when measured: one number per seed, no interval over images.
QUALITY = [
    ("inception.fid.sample", "FID sample"),
    ("inception.kid.sample", "KID sample"),
    ("inception.fid.recon", "FID recon"),
    ("inception.kid.recon", "KID recon"),
]


def _quality_cell(variant: Variant, baseline: Variant, key: str) -> str:
    ours, theirs = variant.value(key), baseline.value(key)
    return "" if ours is None or theirs is None else f"{ours - theirs:+.3g}"


def _quality_line(variant: Variant, baseline: Variant) -> str | None:
    parts = [
        f"{label} {_cell(variant, key, '.4g')} vs {_cell(baseline, key, '.4g')}"
        for key, label in QUALITY
        if variant.value(key) is not None and baseline.value(key) is not None
    ]
    return "; ".join(parts) if parts else None


def _inception_note(pairs: list[tuple[Variant, Variant]], quality: list[str]) -> list[str]:
    """Why FID and KID were not measured, else how to read them when they were."""
    unmeasured = [v.evaluation.get("inception", {}) for v, _b in pairs]
    unmeasured = [record for record in unmeasured if record and not record.get("measured", True)]
    if unmeasured:
        where = unmeasured[0].get("put the file at")
        reason = unmeasured[0]["reason"]
        return [
            "",
            f"FID and KID: not measured — {reason}"
            + (f" (put the file at `{where}`)." if where and where not in reason else ""),
        ]
    if quality:
        return ["", INCEPTION_CAVEAT]
    return []


def collapse_line(variant: Variant) -> str:
    """One VAE's collapse verdict over its seeds and its active latent dimensions."""
    seeds = variant.evaluation["images"]["seeds"]
    collapsed = round(variant.value("collapse.collapsed") * seeds)
    active, dims = variant.value("latent.active_units"), variant.value("latent.dims")
    spread = variant.sd("latent.active_units")
    units = (
        f"{active:.3g}{f' ± {spread:.2g}' if spread else ''} of {dims:.0f} latent dimensions active"
    )
    if collapsed == 0:
        return f"- {variant.name}: the decoder uses z in all {seeds} seed(s); {units}."
    return f"- {variant.name}: **posterior collapse in {collapsed} of {seeds} seed(s)**; {units}."


def collapse_section(variants: Sequence[Variant]) -> list[str]:
    """A line per variant with a collapse verdict; nothing when none has one."""
    collapse = [collapse_line(v) for v in variants if v.value("collapse.collapsed") is not None]
    if not collapse:
        return []
    return ["", "## Posterior collapse", "", COLLAPSE_INTRO, "", *collapse]


def anomaly_section(variants: Sequence[Variant]) -> list[str]:
    """The AUROCs of study 004 for the variants that measured them, and which of them rank the
    non-faces as likelier; nothing when none did."""
    ood = [v for v in variants if "ood" in v.evaluation]
    if not ood:
        return []
    lines = [
        "",
        "## Anomaly detection (study 004): AUROC, test faces against non-faces",
        "",
        "| variant | reconstruction error | negative ELBO |",
        "|---|---|---|",
    ]
    for v in ood:
        elbo = v.value("ood.auroc_neg_elbo")
        lines.append(
            f"| {v.name} | {v.value('ood.auroc_recon_error'):.3f} | "
            f"{'' if elbo is None else f'{elbo:.3f}'} |"
        )
    paradox = [v for v in ood if (v.value("ood.auroc_neg_elbo") or 0.5) < 0.5]
    if paradox:
        lines += [
            "",
            "Below 0.5 the model gives the non-faces the *higher* likelihood than the faces "
            "(the likelihood paradox of deep generative models, Nalisnick et al. 2019): its "
            f"ELBO is no anomaly score here, for {', '.join(v.name for v in paradox)}.",
        ]
    return lines


METHOD = (
    "Every comparison puts one side (a variant's reconstructions, samples or sharpened "
    "reconstructions, or the test images) against another and takes the difference of their "
    "means (over seeds, of the per-seed mean over images) and its ratio. Its interval is a "
    "percentile bootstrap of that difference with 10,000 resamples: the test images resampled "
    "jointly for both sides when both are measured on them (paired), each side's items on its "
    "own when either side is samples (unpaired), and the seeds within each variant. A claim's "
    "k comparisons are decided at level 1 − 0.05 / k each (Bonferroni). A sharpness comparison "
    "holds when the Laplacian variance and the spectral half-power frequency both decide in "
    "the claimed direction, does not hold when both decide against it, and is inconclusive "
    "otherwise. A comparison that uses a variant with a collapsed replicate does not count."
)
VARIANTS_INTRO = (
    "Test split, mean ± standard deviation over seeds. MSE, PSNR (dB) and SSIM on images in "
    "[0, 1]; `Lap var`: variance of the 3×3 Laplacian of the grey image (higher is sharper); "
    "`norm. sharp.`: the same divided by the image's intensity variance (unstable on nearly "
    "flat images, so no claim is decided on it); `half-power`: the frequency (fraction of "
    "Nyquist) where a reconstruction keeps half its input's power. `code size`: latent values "
    "per image; an overcomplete code (more values than pixels) can copy its input."
)
COLLAPSE_INTRO = (
    "A seed's VAE is collapsed when no latent dimension is active or its reconstructions "
    "barely vary from image to image (the verdict per seed is `notes.collapse` in "
    "`metrics/detail/eval/<variant>.json`)."
)
INCEPTION_CAVEAT = (
    "FID and KID (Inception-v3 features, against the test split) carry no interval over test "
    "images and are biased upward on few images: compare them at equal image counts only."
)
FFL_CAVEAT = (
    "A model trained with the focal frequency loss was trained to reproduce its inputs' "
    "spectra, high frequencies included: its spectral measures (and, in part, the Laplacian "
    "variance, a high-pass measure) are partly its training target, not an independent measure "
    "of its sharpness; its samples' sharpness (prior draws, never a target) is not."
)


def claims_section(claims: Sequence[Claim]) -> list[str]:
    """Each claim: its outcome and counts, then one line per comparison."""
    lines = ["## Claims", "", METHOD, ""]
    for claim in claims:
        lines += [f"### {claim.text}", "", f"**{claim.outcome}**: {claim.counts()}.", ""]
        lines += [f"- {comparison.line()}" for comparison in claim.comparisons]
        lines += [f"- flag: {flag}" for flag in claim.flagged]
        lines.append("")
    return lines


def family_table(family: Family, variants: dict[str, Variant]) -> str:
    """One family's table: a row per member, by knob value."""
    rows = []
    for name, knob_value in zip(family.variants, family.values, strict=True):
        v = variants[name]
        row = {family.knob: str(knob_value), "variant": name}
        row |= {label: _cell(v, key, fmt) for key, label, fmt in TABLE}
        rows.append(row)
    return _markdown(rows)


def sweeps_section(
    families: Sequence[Family], variants: dict[str, Variant], family_file: Callable[[Family], str]
) -> list[str]:
    """A table and a figure per one-knob family."""
    lines = ["## One-knob sweeps", "", "Variants whose `models:` entries differ in one knob.", ""]
    for family in families:
        lines += [
            f"### {family.knob}",
            "",
            family_table(family, variants),
            "",
            f"![{family.knob}](compare/{family_file(family)}.png)",
            "",
        ]
    return lines


def remedies_section(
    comparisons: Sequence[RemedyComparison], variants: dict[str, Variant], *, figure: str | None
) -> list[str]:
    """Each remedy's comparisons against its plain VAE, FID / KID when measured (or why not),
    the caveats and the figure of the same test faces through every remedy."""
    lines = ["## Remedies", ""]
    for c in comparisons:
        remedy = "; ".join(f"{r.label} ({r.paper})" for r in c.remedies)
        if c.baseline is None:
            lines += [f"- {c.variant} ({remedy}): {c.reason}."]
            continue
        lines += [f"- {c.variant} ({remedy}) against {c.baseline}:"]
        lines += [f"  - {comparison.line()}" for comparison in c.comparisons.values()]
        if line := _quality_line(variants[c.variant], variants[c.baseline]):
            lines.append(f"  - {line} (mean ± sd over seeds; one number per seed, no verdict).")
    pairs = [
        (variants[c.variant], variants[c.baseline]) for c in comparisons if c.baseline is not None
    ]
    quality = [
        key
        for key, _label in QUALITY
        if any(v.value(key) is not None and b.value(key) is not None for v, b in pairs)
    ]
    lines += _inception_note(pairs, quality)
    if any(r.key == "ffl" for c in comparisons for r in c.remedies):
        lines += ["", FFL_CAVEAT]
    if figure:
        lines += ["", f"![remedies]({figure})"]
    return [*lines, ""]


def render_detail(
    params: Params,
    variants: Sequence[Variant],
    claims: Sequence[Claim],
    families: Sequence[Family],
    *,
    has_samples: bool,
    family_file: Callable[[Family], str],
    remedies: Sequence[RemedyComparison] = (),
    remedies_figure: str | None = None,
) -> str:
    """The whole of reports/compare_detail.md; a section with nothing to show is left out."""
    pixels = params.data.image_size**2 * params.data.channels
    by_name = {v.name: v for v in variants}
    lines = ["# Comparison detail", "", "Back to the summary: [compare.md](compare.md).", ""]
    lines += claims_section(claims)
    lines += ["## Variants", "", VARIANTS_INTRO, "", variant_table(variants, pixels), ""]
    if families:
        lines += sweeps_section(families, by_name, family_file)
    if remedies:
        lines += remedies_section(remedies, by_name, figure=remedies_figure)
    lines += collapse_section(variants)
    lines += anomaly_section(variants)
    lines += ["", "## Figures", "", "![reconstructions](compare/reconstructions.png)", ""]
    if has_samples:
        lines += ["![samples](compare/samples.png)", ""]
    lines += ["![sharpness against error](compare/sharpness_vs_error.png)", ""]
    return "\n".join(lines)
