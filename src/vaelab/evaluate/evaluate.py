"""The ``evaluate@<variant>`` stage: every experiment of :mod:`vaelab.evaluate.experiments` on
the test split, for each trained replicate (seed) of one variant.

Writes ``metrics/detail/eval/<variant>.json`` (its keys are listed in the README): every
metric's mean over seeds, its standard deviation over seeds under ``sd``, for the per-image
metrics their 95 % interval over seeds and test images under ``intervals``, and the notes
in words, and what it was measured on under ``evaluated_on``
(:mod:`vaelab.config.evaluated_on`), FID and KID under ``inception`` (:mod:`vaelab.evaluate.fid`:
the numbers, or why not measured), and each replicate's own evaluation under ``seeds``
(``seeds.<seed>``: its metric tree in the same shape, its FID and KID when measured, its
notes; what register gives that replicate's MLflow training run);
``metrics/eval/<variant>.json``, the :data:`HEADLINE` numbers of it (the DVC
metrics); and the figures: each replicate's in ``reports/<variant>/seed<k>/*.png``, titled
with its seed, and the first replicate's also in ``reports/<variant>/*.png``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from vaelab import figures
from vaelab.config import Params
from vaelab.config.evaluated_on import EVALUATED_ON, evaluated_on
from vaelab.evaluate import experiments, fid
from vaelab.evaluate.aggregate import Replicate, combine, combine_curves, combine_notes
from vaelab.evaluate.context import Context, build_contexts
from vaelab.evaluate.result import merge_into
from vaelab.io.atomic import atomic_directory
from vaelab.io.metric_files import OWN_EVALUATIONS, headline_of, metric_files
from vaelab.io.per_image_table import per_image_path, per_image_table, write_table
from vaelab.measures.headline import eval_headline
from vaelab.models.saved import replicate_folder

log = logging.getLogger("vaelab.evaluate")

# The detail's section of each replicate's own evaluation: seeds.<seed> (as a string, JSON's key).
SEEDS = OWN_EVALUATIONS
# Top-level keys of the metrics that run_evaluate writes whole; no experiment adds to them.
STAGE_KEYS = frozenset(
    {"images", "notes", "sd", "intervals", "curves", SEEDS, EVALUATED_ON, fid.RECORD}
)

# The DVC metrics of a variant, ``metrics/eval/<variant>.json``: headline key -> the key of the
# detail it copies (means over seeds; vaelab.measures.headline). A key the variant lacks (an AE's
# ELBO, FID and KID when not measured) is left out.
HEADLINE = eval_headline()


def run_evaluate(
    params: Params,
    variant: str,
    *,
    prepared: Path = Path("data/prepared"),
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
    progress: bool = True,
) -> dict[str, Any]:
    """Run the experiments in order on every replicate; returns what
    ``metrics/detail/eval/<variant>.json`` holds."""
    contexts = build_contexts(
        params, variant, prepared=prepared, models_root=models_root, progress=progress
    )
    # Before the experiments: a wrong weights file stops here.
    inception = fid.resolve(params.evaluate.inception)
    replicates = []
    drawn = 0
    with atomic_directory(reports_root / variant) as staging:
        for ctx in contexts:
            saved: dict[str, str] = {}  # figure file name -> the experiment that drew it
            replicates.append(run_experiments(ctx, replicate_folder(staging, ctx.replicate), saved))
            drawn += len(saved)
        first = replicate_folder(staging, contexts[0].replicate)
        for png in sorted(first.glob("*.png")):  # the variant's figures: its first replicate's
            shutil.copyfile(png, staging / png.name)
    metrics, sd, intervals = combine(replicates, bootstrap_seed=params.seed)
    quality = fid.sample_quality(inception, contexts, progress=progress)
    metrics.update(
        sd=sd | quality.sd,
        intervals=intervals,
        images={
            "test": len(contexts[0].test),
            "samples": contexts[0].settings.samples,
            "seeds": len(contexts),
        },
        notes=combine_notes(replicates),
        curves=combine_curves(replicates),
        **{SEEDS: own_evaluations(replicates, quality)},
        **{EVALUATED_ON: evaluated_on(params, contexts[0].test), fid.RECORD: quality.record},
    )
    metric_files(metrics_root, f"eval/{variant}.json").write(
        headline_of(metrics, HEADLINE), metrics
    )
    write_table(
        per_image_table(variant, replicates, contexts[0].data.ids("test")),
        per_image_path(metrics_root, variant),
    )
    log_summary(variant, metrics, replicates=len(contexts), drawn=drawn)
    return metrics


def own_evaluations(
    replicates: list[Replicate], quality: fid.SampleQuality
) -> dict[str, dict[str, Any]]:
    """``{"<seed>": that replicate's metric tree (its FID and KID under the record's key when
    measured) and its notes}``: the shape of the detail, so a dotted key reads both."""
    own: dict[str, dict[str, Any]] = {}
    for replicate in replicates:
        measured = quality.seeds.get(replicate.seed)
        own[str(replicate.seed)] = {
            **replicate.metrics,
            **({} if measured is None else {fid.RECORD: measured}),
            "notes": dict(sorted(replicate.notes.items())),
        }
    return own


def log_summary(variant: str, metrics: dict[str, Any], *, replicates: int, drawn: int) -> None:
    """Log what ran and, when measured, the headline numbers."""
    log.info(
        "%s: %d experiments on %d replicate(s), %d figures",
        variant,
        len(experiments.EXPERIMENTS),
        replicates,
        drawn,
    )
    # The headline numbers, when the experiments that measure them are in the list.
    if "recon" in metrics and "blur" in metrics:
        sharpness = metrics["blur"]["laplacian_var"]
        log.info(
            "%s: recon mse %.5f, ssim %.3f, "
            "Laplacian variance input %.5f / recon %.5f / sample %.5f",
            variant,
            metrics["recon"]["mse"],
            metrics["recon"]["ssim"],
            sharpness["input"],
            sharpness["recon"],
            sharpness["sample"],
        )
        if "sample_gmm" in sharpness:
            log.info(
                "%s: Laplacian variance of the latent GMM's samples %.5f",
                variant,
                sharpness["sample_gmm"],
            )


def run_experiments(ctx: Context, staging: Path, saved: dict[str, str]) -> Replicate:
    """Every experiment on one replicate; its figures (when ``ctx.draw``) go to ``staging``
    (the replicate's own folder)."""
    # Every experiment seeds a generator of its own; this covers any library call that takes
    # none.
    torch.manual_seed(ctx.seed)
    metrics: dict[str, Any] = {}
    per_image: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    curves: dict[str, np.ndarray] = {}
    for experiment in experiments.EXPERIMENTS:
        result = experiment(ctx)
        name = experiment.__name__
        # Figures first: saving closes them, and on any error below the staging folder goes.
        save_figures(result.figures, staging, saved, source=name)
        taken = sorted(STAGE_KEYS & result.metrics.keys())
        if taken:
            raise ValueError(
                f"experiment {name!r} writes metric {taken[0]!r}, which run_evaluate writes itself"
            )
        merge_into(metrics, result.metrics, kind="metric", source=name)
        merge_into(per_image, result.per_image, kind="per-image metric", source=name)
        merge_into(notes, result.notes, kind="note", source=name)
        merge_into(curves, result.curves, kind="curve", source=name)
    return Replicate(ctx.replicate, metrics, per_image, notes, curves)


def save_figures(
    drawn: dict[str, Figure], folder: Path, saved: dict[str, str], *, source: str
) -> None:
    """Save an experiment's figures as ``folder/<file name>`` and close them.

    ``saved`` records the names written so far: a name saved before, or one that is not a
    plain ``*.png`` file name, is a ValueError (and the figures are closed all the same).
    """
    try:
        for name in drawn:
            if Path(name).name != name or Path(name).suffix != ".png":
                raise ValueError(
                    f"experiment {source!r} names a figure {name!r}; "
                    "figures are plain '<name>.png' files"
                )
        merge_into(saved, dict.fromkeys(drawn, source), kind="figure", source=source)
        for name, figure in drawn.items():
            figures.save(figure, folder / name)
    finally:
        for figure in drawn.values():
            plt.close(figure)
