"""``reports/compare.md``, read in a minute: the verdict matrix, a few sentences, the claims'
counts, the key effects, the remedies' verdicts, the spectra and a compact variant table.
Every comparison's numbers are one click away in ``reports/compare_detail.md``
(:mod:`vaelab.compare.report_detail`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vaelab.compare.remedies import VERDICTS, RemedyComparison
from vaelab.compare.report_detail import _markdown
from vaelab.compare.verdicts import (
    COLLAPSED,
    HOLDS,
    INCONCLUSIVE,
    MIXED,
    MOSTLY_HOLDS,
    MOSTLY_NOT,
    NOT_HOLDS,
    Claim,
    summary,
)
from vaelab.config import Params

if TYPE_CHECKING:
    from vaelab.compare.variants import Variant

RULE = (
    "Each comparison is a paired bootstrap interval of the difference (same test images, "
    "seeds within each variant; samples unpaired), a claim's k comparisons at level "
    "1 − 0.05/k; sharpness needs the Laplacian variance and the spectral half-power frequency "
    "to agree. Every comparison with its numbers: [compare_detail.md](compare_detail.md)."
)
# The compact variant table: (dotted eval key, label, format).
COMPACT = [
    ("recon.mse", "MSE", ".3g"),
    ("blur.laplacian_var.recon", "Lap var recon", ".3g"),
    ("spectrum.half_power.recon", "half-power recon", ".3g"),
    ("blur.laplacian_var.sample", "Lap var sample", ".3g"),
]


def _tally(claim: Claim) -> str:
    """``12 of 12`` or ``11 of 12 hold, 1 against``: a claim's counts in a few words."""
    n, holds, against = claim.counted, claim.count(HOLDS), claim.count(NOT_HOLDS)
    if n and holds == n:
        return f"{n} of {n}"
    return f"{holds} of {n} hold" + (f", {against} against" if against else "")


def _set_aside(claims: Sequence[Claim]) -> str:
    """``Set aside: collapsed vae_study003; not converged vae_sigma.`` or nothing."""
    collapsed = sorted({v for c in claims for v in c.variants(COLLAPSED)})
    late = sorted({flag.split(" not converged")[0] for c in claims for flag in c.flagged})
    parts = [f"collapsed {', '.join(collapsed)}"] if collapsed else []
    parts += [f"not converged {', '.join(late)}"] if late else []
    return f"Set aside: {'; '.join(parts)} (numbers in the detail)." if parts else ""


def sentences(
    params: Params, variants: Sequence[Variant], claims: Sequence[Claim],
    remedies: Sequence[RemedyComparison],
) -> list[str]:  # fmt: skip
    """Three to five sentences: what was measured, what holds, what does not, the remedies,
    and what was set aside."""
    data, groups = params.data, summary(claims)
    seeds = sorted({v.evaluation["images"]["seeds"] for v in variants})
    tests = variants[0].evaluation["images"]["test"]
    out = [
        f"On {data.dataset} ({data.image_size}×{data.image_size}, {len(variants)} variants, "
        f"{'/'.join(map(str, seeds))} seeds each, {tests} test images), {len(groups[HOLDS])} of "
        f"{sum(1 for c in claims if c.counted)} measured claims hold in every comparison."
    ]
    for outcomes, lead in (
        ((HOLDS, MOSTLY_HOLDS), "Holding"),
        ((MIXED, MOSTLY_NOT, NOT_HOLDS, INCONCLUSIVE), "Not holding or not settled"),
    ):
        group = [c for outcome in outcomes for c in groups[outcome]]
        if group:
            out.append(f"{lead}: " + "; ".join(f"{c.text} ({_tally(c)})" for c in group) + ".")
    if remedies:
        better = [r.variant for r in remedies if r.verdicts.get("recon_sharpness") == "better"]
        sharpen = ", ".join(better) if better else "none"
        out.append(f"Remedies that sharpen the reconstructions measurably: {sharpen}.")
    if aside := _set_aside(claims):
        out.append(aside)
    return out


def claims_table(claims: Sequence[Claim]) -> str:
    """One row per claim: its outcome and counts."""
    rows = []
    for c in claims:
        rows.append(
            {
                "claim": c.text,
                "outcome": c.outcome,
                "holds": f"{c.count(HOLDS)}/{c.counted}" if c.counted else "",
                "against": f"{c.count(NOT_HOLDS)}/{c.counted}" if c.counted else "",
                "inconclusive": f"{c.count(INCONCLUSIVE)}/{c.counted}" if c.counted else "",
                "not counted": str(c.count("collapsed")) if c.count("collapsed") else "",
            }
        )
    return _markdown(rows)


def _verdict_cell(comparison: RemedyComparison, name: str) -> str:
    found = comparison.comparisons.get(name)
    if found is None:
        return ""
    first = next(iter(found.results.values()))
    return f"{comparison.verdicts[name]} (×{first.ratio:.3g})"


def remedies_table(remedies: Sequence[RemedyComparison]) -> str:
    """One row per remedy variant: its verdict (and the ratio of means) per comparison."""
    rows = []
    for r in remedies:
        row = {
            "variant": r.variant,
            "remedy": ", ".join(x.key for x in r.remedies),
            "against": r.baseline or "—",
        }
        row |= {name.replace("_", " "): _verdict_cell(r, name) for name in VERDICTS}
        if r.baseline is None:
            row["recon sharpness"] = r.reason
        rows.append(row)
    return _markdown(rows)


def compact_table(variants: Sequence[Variant]) -> str:
    """Each variant's few headline numbers (means over seeds)."""
    rows = []
    for v in variants:
        row = {"variant": v.name, "kind": "VAE" if v.evaluated.variational else "AE"}
        for key, label, fmt in COMPACT:
            value = v.value(key)
            row[label] = "" if value is None else format(value, fmt)
        rows.append(row)
    return _markdown(rows)


def render_markdown(
    params: Params,
    variants: Sequence[Variant],
    claims: Sequence[Claim],
    remedies: Sequence[RemedyComparison] = (),
) -> str:
    """The whole of reports/compare.md."""
    lines = [
        "# What this run says about blur",
        "",
        "![verdicts: claims × variants](compare/verdicts.png)",
        "",
        " ".join(sentences(params, variants, claims, remedies)),
        "",
        claims_table(claims),
        "",
        RULE,
        "",
        "## Key effects",
        "",
        "![key effects](compare/forest.png)",
        "",
    ]
    if remedies:
        lines += ["## Remedies", "", remedies_table(remedies), ""]
    lines += [
        "## Spectra",
        "",
        "![spectra](compare/spectra.png)",
        "",
        "## Variants",
        "",
        compact_table(variants),
        "",
        "Full tables, sweeps, FID / KID, collapse and anomaly detection: "
        "[compare_detail.md](compare_detail.md).",
        "",
    ]
    return "\n".join(lines)
