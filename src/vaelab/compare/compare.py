"""The ``compare`` stage: the studies' claims and the remedies decided on paired comparisons
of the per-image tables that evaluate kept, every variant in one table, the one-knob sweeps,
and the figures.

Writes ``metrics/compare.json`` (how many claims hold and how many go against the studies;
how many of the remedies' verdicts are better and worse), ``metrics/detail/compare.json``
(every comparison with its differences and intervals, a few numbers per variant, the test
images' sharpness), ``metrics/compare/history.csv`` (every variant's training curves in one
long table, grouped for DVC's curves chart: vaelab.compare.history), ``reports/compare.md``,
``reports/compare_detail.md`` and ``reports/compare/*.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from vaelab import figures
from vaelab.compare.claims import CLAIMS
from vaelab.compare.comparisons import Measurements, Status
from vaelab.compare.families import Family, find_families
from vaelab.compare.findings_figures import forest_plot, spectra_figure, verdict_matrix
from vaelab.compare.history import curve_groups, write_history
from vaelab.compare.remedies import RemedyComparison, compare_remedies, verdict_scores
from vaelab.compare.report_detail import render_detail
from vaelab.compare.report_md import render_markdown
from vaelab.compare.variants import Variant, as_variant, read_records
from vaelab.compare.verdicts import HOLDS, MOSTLY_HOLDS, MOSTLY_NOT, NOT_HOLDS, Claim
from vaelab.config import Params
from vaelab.data.prepared_data import PreparedData, load_prepared
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.io.metric_files import metric_files
from vaelab.kernels import in_force
from vaelab.measures.headline import (
    CLAIMS_AGAINST,
    CLAIMS_HOLD,
    REMEDIES_BETTER,
    REMEDIES_WORSE,
    compare_json,
)
from vaelab.models.inference import reconstruct, to_numpy
from vaelab.models.replicates import load_variant
from vaelab.models.saved import check_fits

log = logging.getLogger("vaelab.compare")

# What each one-knob family is drawn against: (dotted eval key, axis label); a key a variant
# lacks (active units of an AE) is left out of its panel.
FAMILY_METRICS = [
    ("blur.laplacian_var.recon", "Laplacian variance of reconstructions"),
    ("recon.mse", "reconstruction MSE"),
    ("latent.active_units", "active units"),
    ("blur.laplacian_var.sample", "Laplacian variance of samples"),
]


@dataclass
class Gathered:
    """What compare reads and draws of every variant, in the order of ``models:``."""

    variants: list[Variant] = field(default_factory=list)
    recon_rows: list[np.ndarray] = field(default_factory=list)  # the shown test images
    sample_rows: list[tuple[str, np.ndarray]] = field(default_factory=list)  # VAEs only
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # where training wrote one


def run_compare(
    params: Params,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
) -> dict[str, Any]:
    """Compare every variant of ``params.models``: decide the claims, write the figures,
    ``metrics/compare.json`` (its detail returned), the training history and the report."""
    data = load_prepared(prepared)
    shown = data.split("test")[: params.evaluate.show]
    gathered = gather(params, data, shown, models_root, metrics_root)
    variants = gathered.variants
    status = {v.name: variant_status(v) for v in variants}
    measured = Measurements.read(metrics_root, list(params.models), status)
    claims = [check([v.evaluated for v in variants], measured, params.seed) for check in CLAIMS]
    families = find_families(params.models)
    remedies = compare_remedies(
        {name: entry.model_dump(mode="json") for name, entry in params.models.items()},
        measured,
        seed=params.seed,
    )
    reference = {
        key: variants[0].value(f"blur.{key}.input")
        for key in ("laplacian_var", "laplacian_var_norm")
    }
    result, headline = compare_metrics(variants, claims, remedies, reference)

    with atomic_directory(reports_root / "compare") as staging:
        remedies_drawn = draw_figures(
            staging, params, shown, gathered, families, remedies, reference["laplacian_var"]
        )
        draw_findings(staging, claims, variants)
    # The CPU kernels that computed it (vaelab.kernels) beside the comparisons.
    metric_files(metrics_root, "compare.json").write(headline, result | {"kernels": in_force()})
    write_history(
        gathered.histories,
        curve_groups(params.models, families),
        metrics_root / "compare" / "history.csv",
    )
    write_reports(params, reports_root, gathered, claims, families, remedies, remedies_drawn)
    for claim in claims:
        log.info("%s: %s (%s)", claim.outcome, claim.text, claim.counts())
    return result


def gather(
    params: Params, data: PreparedData, shown: np.ndarray, models_root: Path, metrics_root: Path
) -> Gathered:
    """Every variant's records and model: the shown test images reconstructed, prior samples
    of each VAE (seeded by ``params.seed``), and its training history when there is one."""
    gathered = Gathered()
    for name in params.models:
        evaluation, training = read_records(name, metrics_root)
        model, config = load_variant(params, name, models_root)
        check_fits(config, data.images, f"models/{name}")
        gathered.variants.append(as_variant(params, name, model, evaluation, training))
        gathered.recon_rows.append(to_numpy(reconstruct(model, shown, params.evaluate.batch_size)))
        if model.is_variational:
            generator = torch.Generator().manual_seed(params.seed)
            gathered.sample_rows.append(
                (name, to_numpy(model.sample(params.evaluate.show, generator=generator)))
            )
        history_path = metrics_root / "history" / f"{name}.csv"
        if history_path.is_file():
            gathered.histories[name] = pd.read_csv(history_path)
    return gathered


def variant_status(variant: Variant) -> Status:
    """A variant's collapsed replicates (evaluate's verdict) and whether its training had
    converged (train's record), for the comparisons that use it."""
    seeds = int(variant.evaluation["images"]["seeds"])
    collapsed = variant.value("collapse.collapsed") or 0.0
    convergence = variant.training.get("convergence", {})
    return Status(
        collapsed_seeds=round(collapsed * seeds),
        seeds=seeds,
        not_converged="" if convergence.get("converged", True) else str(convergence.get("note")),
    )


def compare_metrics(
    variants: list[Variant],
    claims: list[Claim],
    remedies: list[RemedyComparison],
    reference: dict[str, float | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(detail, headline)`` of metrics/compare.json: per claim its outcome, the fractions of
    its comparisons that hold and that go against it and every comparison, the remedies'
    verdicts, the test images' sharpness and the headline numbers per variant (the detail);
    the counts of :func:`compare_headline` (the headline)."""
    result: dict[str, Any] = {
        "reference": reference,
        "variants": {
            v.name: {
                m.detail: v.value(m.detail) for m in compare_json() if v.value(m.detail) is not None
            }
            for v in variants
        },
        "claims": {
            c.key: {
                "text": c.text,
                "outcome": c.outcome,
                **c.fractions(),
                "counts": c.counts(),
                "comparisons": [comparison.to_dict() for comparison in c.comparisons],
            }
            for c in claims
        },
    }
    headline = compare_headline(claims, remedies)
    if any(r.comparisons for r in remedies):
        result["remedies"] = {
            r.variant: {
                "baseline": r.baseline,
                "verdicts": r.verdicts,
                "comparisons": {k: c.to_dict() for k, c in r.comparisons.items()},
            }
            for r in remedies
        }
    return result, headline


def compare_headline(claims: list[Claim], remedies: list[RemedyComparison]) -> dict[str, int]:
    """The DVC metrics of metrics/compare.json (vaelab.measures.headline): the claims that
    hold or mostly hold and those that go against the studies, of the measured ones; with a
    scored remedy, its verdicts better and worse than its plain VAE."""
    outcomes = [c.outcome for c in claims if c.counted]
    headline = {
        CLAIMS_HOLD: sum(o in (HOLDS, MOSTLY_HOLDS) for o in outcomes),
        CLAIMS_AGAINST: sum(o in (NOT_HOLDS, MOSTLY_NOT) for o in outcomes),
    }
    if scores := [s for verdicts in verdict_scores(remedies).values() for s in verdicts.values()]:
        headline[REMEDIES_BETTER] = sum(s > 0 for s in scores)
        headline[REMEDIES_WORSE] = sum(s < 0 for s in scores)
    return headline


def draw_findings(staging: Path, claims: list[Claim], variants: list[Variant]) -> None:
    """The figures compare.md opens with: verdicts.png, forest.png, spectra.png."""
    names = [v.name for v in variants]
    figures.save(verdict_matrix(claims, names), staging / "verdicts.png")
    figures.save(forest_plot(claims), staging / "forest.png")
    curves = {v.name: v.evaluation.get("curves", {}) for v in variants}
    if all("rapsd.input" in c for c in curves.values()):
        figures.save(spectra_figure(curves, names), staging / "spectra.png")


def write_reports(
    params: Params,
    reports_root: Path,
    gathered: Gathered,
    claims: list[Claim],
    families: list[Family],
    remedies: list[RemedyComparison],
    remedies_drawn: bool,
) -> None:
    """reports/compare.md (a minute's read) and reports/compare_detail.md (every number)."""
    with atomic_file(reports_root / "compare.md") as handle:
        handle.write(render_markdown(params, gathered.variants, claims, remedies))
    with atomic_file(reports_root / "compare_detail.md") as handle:
        handle.write(
            render_detail(
                params,
                gathered.variants,
                claims,
                families,
                has_samples=bool(gathered.sample_rows),
                family_file=family_file,
                remedies=remedies,
                remedies_figure="compare/remedies.png" if remedies_drawn else None,
            )
        )


def draw_figures(
    staging: Path,
    params: Params,
    shown: np.ndarray,
    gathered: Gathered,
    families: list[Family],
    remedies: list[RemedyComparison],
    reference: float | None,
) -> bool:
    """Every figure of reports/compare/ into ``staging``; True when the remedies figure was
    drawn."""
    figures.save(
        figures.image_rows(
            [shown / 255.0, *gathered.recon_rows],
            title=f"The first {len(shown)} test images reconstructed by every variant "
            f"(seed {params.seed}, decoded from μ or the code)",
            row_labels=["input", *params.models],
        ),
        staging / "reconstructions.png",
    )
    if gathered.sample_rows:
        figures.save(
            figures.image_rows(
                [images for _v, images in gathered.sample_rows],
                title=f"{params.evaluate.show} samples z ~ N(0, I) of every VAE "
                f"(seed {params.seed})",
                row_labels=[v for v, _images in gathered.sample_rows],
            ),
            staging / "samples.png",
        )
    figures.save(sharpness_figure(gathered.variants, reference), staging / "sharpness_vs_error.png")
    for family in families:
        figures.save(
            family_figure(family, {v.name: v for v in gathered.variants}),
            staging / f"{family_file(family)}.png",
        )
    return remedies_figure(
        remedies,
        shown,
        dict(zip(params.models, gathered.recon_rows, strict=True)),
        staging / "remedies.png",
        seed=params.seed,
    )


def sharpness_figure(variants: list[Variant], reference: float | None) -> Figure:
    """Every variant's sharpness against its reconstruction error, the test images' sharpness
    (``reference``) as a line."""
    # evaluate measures these of every variant and of the test images: no None here.
    return figures.scatter_chart(
        {
            v.name: cast(
                tuple[float, float], (v.value("recon.mse"), v.value("blur.laplacian_var.recon"))
            )
            for v in variants
        },
        errors={
            v.name: (v.sd("recon.mse") or 0.0, v.sd("blur.laplacian_var.recon") or 0.0)
            for v in variants
        },
        title="Sharpness against reconstruction error (mean ± sd over seeds)",
        xlabel="reconstruction MSE (test split, lower is better)",
        ylabel="Laplacian variance of reconstructions\n(higher is sharper)",
        reference=("test images", cast(float, reference)),
    )


def remedies_figure(
    remedies: list[RemedyComparison],
    shown: np.ndarray,
    recons: dict[str, np.ndarray],
    path: Path,
    *,
    seed: int,
) -> bool:
    """The same test faces through each plain VAE and the remedies measured against it; False
    (nothing drawn) when no remedy has a baseline."""
    measured = [(c.baseline, c) for c in remedies if c.baseline is not None]
    if not measured:
        return False
    order = list(dict.fromkeys(name for baseline, c in measured for name in (baseline, c.variant)))
    remedy_keys = {c.variant: ", ".join(r.key for r in c.remedies) for _b, c in measured}
    labels = [f"{name}\n({remedy_keys[name]})" if name in remedy_keys else name for name in order]
    figures.save(
        figures.image_rows(
            [shown / 255.0, *(recons[name] for name in order)],
            title=f"The first {len(shown)} test images through each plain VAE and its "
            f"remedies (seed {seed}, decoded from μ or the code)",
            row_labels=["input", *labels],
        ),
        path,
    )
    return True


def family_file(family: Family) -> str:
    """The figure's file name (without .png) for one family."""
    return f"family_{family.knob}_{'_'.join(family.variants)}"


def family_figure(family: Family, variants: dict[str, Variant]) -> Figure:
    """One panel per FAMILY_METRICS entry: the metric against the knob, error bars the seeds' sd."""
    panels = []
    for key, label in FAMILY_METRICS:
        members = [variants[name] for name in family.variants]
        values = [m.value(key) for m in members]
        means = [v for v in values if v is not None]
        if len(means) < len(values):
            continue
        panels.append((label, means, [m.sd(key) or 0.0 for m in members]))
    return figures.knob_chart(
        [str(v) for v in family.values],
        panels,
        title=f"One-knob sweep: {family.knob} ({', '.join(family.variants)}), mean ± sd over seeds",
        xlabel=family.knob,
    )
