"""``reports/compare.md``: the summary in words, the variant table, the claims with their
numbers, the one-knob sweeps, collapse and anomaly-detection notes, and the figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from vaelab.compare.claims import summary
from vaelab.compare.families import Family
from vaelab.compare.remedies import CHANGES, RemedyComparison
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


def family_table(family: Family, variants: dict[str, Variant]) -> str:
    """One family's table: a row per member, by knob value."""
    rows = []
    for name, knob_value in zip(family.variants, family.values, strict=True):
        v = variants[name]
        row = {family.knob: str(knob_value), "variant": name}
        row |= {label: _cell(v, key, fmt) for key, label, fmt in TABLE}
        rows.append(row)
    return _markdown(rows)


def _markdown(rows: list[dict[str, str]]) -> str:
    """The rows as a Markdown table, one column per key."""
    table: str = pd.DataFrame(rows).to_markdown(index=False)
    return table


def _change_cell(comparison: RemedyComparison, key: str) -> str:
    change = next((c for c in comparison.changes if c.key == key), None)
    return "" if change is None else f"{change.delta:+.3g} ({change.verdict})"


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


# The paragraphs of the report that hold no number.
REMEDIES_INTRO = (
    "Each variant that applies a remedy against the plain VAE with the same trunk and z (a "
    "variational `vae_conv` entry with no remedy, equal in every other knob): the change is "
    "the remedy's mean minus the plain VAE's, and its verdict compares their 95 % intervals — "
    "better or worse when they are apart, inconclusive when they overlap. Sharpness verdicts "
    "need the raw and the contrast-normalised measure to agree."
)
INCEPTION_CAVEAT = (
    "FID and KID (Inception-v3 features, against the test split) carry no interval over test "
    "images and are biased upward on few images: compare them at equal image counts only."
)
FFL_CAVEAT = (
    "A model trained with the focal frequency loss was trained to reproduce its inputs' "
    "spectra, high frequencies included: its `blur.hf_energy` (and, in part, the Laplacian "
    "variance, a high-pass measure) is partly its training target, not an independent measure "
    "of its sharpness; its samples' sharpness (prior draws, never a target) is not."
)
VARIANTS_INTRO = (
    "Test split, mean ± standard deviation over seeds. MSE, PSNR (dB) and SSIM on images in "
    "[0, 1]; `Lap var`: variance of the 3×3 Laplacian of the grey image (higher is sharper); "
    "`norm. sharp.`: the same divided by the image's intensity variance, so that plain "
    "contrast does not count as sharpness. `code size`: latent values per image; an "
    "overcomplete code (more values than pixels) can copy its input, so those AEs are no "
    "like-for-like match for a VAE."
)
COLLAPSE_INTRO = (
    "A seed's VAE is collapsed when no latent dimension is active or its reconstructions "
    "barely vary from image to image (the verdict per seed is `notes.collapse` in "
    "`metrics/eval/<variant>.json`)."
)


def remedies_section(
    comparisons: Sequence[RemedyComparison], variants: dict[str, Variant], *, figure: str | None
) -> list[str]:
    """The remedies table (each remedy's change against its plain VAE), the intervals behind
    it, FID / KID when measured (or why not), the caveats, and the figure of the same test
    faces through every remedy."""
    pairs = [
        (variants[c.variant], variants[c.baseline]) for c in comparisons if c.baseline is not None
    ]
    quality = [
        key
        for key, _label in QUALITY
        if any(v.value(key) is not None and b.value(key) is not None for v, b in pairs)
    ]
    lines = ["", "## Remedies for blur", "", REMEDIES_INTRO, ""]
    lines += [remedies_table(comparisons, variants, quality), ""]
    lines += _interval_lines(comparisons, variants)
    lines += _inception_note(pairs, quality)
    if any(r.key == "ffl" for c in comparisons for r in c.remedies):
        lines += ["", FFL_CAVEAT]
    if figure:
        lines += ["", f"![remedies]({figure})"]
    return lines


def remedies_table(
    comparisons: Sequence[RemedyComparison], variants: dict[str, Variant], quality: list[str]
) -> str:
    """One row per remedy: its changes against its baseline (FID / KID among them when
    ``quality`` names them) and the verdicts, or why there is no baseline."""
    rows = []
    for c in comparisons:
        row = {
            "variant": c.variant,
            "remedy": "; ".join(f"{r.label} ({r.paper})" for r in c.remedies),
            "against": c.baseline or "—",
        }
        row |= {f"Δ {label}": _change_cell(c, key) for key, label, _better in CHANGES}
        row |= {
            f"Δ {label}": _quality_cell(variants[c.variant], variants[c.baseline], key)
            if c.baseline
            else ""
            for key, label in QUALITY
            if key in quality
        }
        row |= {
            "verdict": ", ".join(
                f"{what.replace('_', ' ')} {verdict}" for what, verdict in c.verdicts.items()
            )
            or c.reason
        }
        rows.append(row)
    return _markdown(rows)


def _interval_lines(
    comparisons: Sequence[RemedyComparison], variants: dict[str, Variant]
) -> list[str]:
    """Each remedy's intervals next to its baseline's, and FID / KID where both have them."""
    lines = []
    for c in comparisons:
        if c.changes and c.baseline is not None:
            lines.append(
                f"- {c.variant} vs {c.baseline}: "
                + "; ".join(
                    f"{ch.label} {ch.remedy.shown()} vs {ch.baseline.shown()}" for ch in c.changes
                )
                + f" (n = {c.changes[0].remedy.seeds} seed(s) × {c.changes[0].remedy.images})."
            )
            if line := _quality_line(variants[c.variant], variants[c.baseline]):
                lines.append(f"  - {line} (mean ± sd over seeds; no verdict: one number per seed).")
    return lines


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


def summary_lines(
    params: Params, variants: Sequence[Variant], claims: Sequence[Claim]
) -> list[str]:
    """What was measured on how much, then the claims grouped by outcome."""
    data = params.data
    seeds = sorted({v.evaluation["images"]["seeds"] for v in variants})
    tests = variants[0].evaluation["images"]["test"]
    colour = "grey" if data.channels == 1 else "RGB"
    lines = [
        f"On {data.dataset} ({data.image_size}×{data.image_size} {colour}), "
        f"{'/'.join(map(str, seeds))} training seed(s) per variant and {tests} test images: "
        "every number is a mean over seeds (± their standard deviation), and each claim is "
        "decided on 95 % bootstrap intervals over seeds and test images (in brackets) — it holds "
        "or does not when the intervals are apart, and is inconclusive when they overlap.",
        "",
    ]
    for outcome, group in summary(claims).items():
        if group:
            lines.append(
                f"- **{outcome}** ({len(group)}): " + "; ".join(c.text for c in group) + "."
            )
    return lines


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


def render_markdown(
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
    """The whole of reports/compare.md; a section with nothing to show is left out."""
    pixels = params.data.image_size**2 * params.data.channels
    by_name = {v.name: v for v in variants}
    lines = [
        "# Variant comparison",
        "",
        "## Summary",
        "",
        *summary_lines(params, variants, claims),
        "",
        "## Variants",
        "",
        VARIANTS_INTRO,
        "",
        variant_table(variants, pixels),
        "",
        "## The studies' claims, measured",
        "",
        *[claim_line(claim) for claim in claims],
    ]
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


def claim_line(claim: Claim) -> str:
    """One claim: its outcome, its text, the variants it compares and its numbers."""
    named = f" Variants: {', '.join(claim.variants)}." if claim.variants else ""
    return f"- **{claim.outcome}**: {claim.text}.{named} {claim.detail}"


def sweeps_section(
    families: Sequence[Family], variants: dict[str, Variant], family_file: Callable[[Family], str]
) -> list[str]:
    """A table and a figure per one-knob family."""
    lines = [
        "",
        "## One-knob sweeps",
        "",
        "Variants whose `models:` entries differ in exactly one knob, ordered by it.",
        "",
    ]
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
