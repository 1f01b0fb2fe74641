"""What ``register`` writes to MLflow besides the registered versions: the training runs'
evaluations, the compare report's run, and the descriptions of models and versions.

Training runs. ``train`` tags each replicate's run with ``stage=train``, ``variant``,
``seed`` and the md5 of the weights it saved (``model_md5``); :func:`find_train_run` looks a
replicate's run up by them (the newest, when one training was repeated with identical
results). :func:`log_evaluation` gives that run, once per content, the variant's
evaluation: its numeric leaves as metrics ``eval.<key>`` (``eval.recon.mse``,
``eval.sd.recon.mse`` for the spread over seeds; the bootstrap ``intervals`` are left to
the JSON), and as artifacts the evaluation file (``evaluation/``), the figures
(``figures/``), the history (``history/``) and the replicate's ``config.json``
(``config/``). The md5 of all of it is the run's ``logged_md5`` tag: a rerun on unchanged
files logs nothing.

The compare run. The compare report, ``reports/compare.md`` (with ``compare_detail.md``) and
``reports/compare/*.png``, is one run named ``compare`` (tag ``stage=compare``) per content:
its ``logged_md5`` tag is the md5 of the report's files, and a pipeline run whose report has
that md5 already in the store logs nothing (:func:`log_compare`).

Descriptions, the Markdown the MLflow UI shows. A version's description says what it is:
the architecture and its knobs, the data it was trained on, its headline metrics and the
fingerprint of what they were measured on, and where it came from (git commit, DVC
experiment). The registered model's description is its champion's (else its newest
version's), under one line naming the variant, so the model list reads "what serving
gets".
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.measures.headline import described
from vaelab.models.saved import SavedConfig, config_file
from vaelab.registry.inputs import Replicate, VariantInputs
from vaelab.tracking import (
    MODEL_MD5_TAG,
    SEED_TAG,
    STAGE_TAG,
    TRAIN_STAGE,
    VARIANT_TAG,
    Provenance,
    run_tags,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger("vaelab.registry")


# --------------------------------------------------------------------------- training runs

LOGGED_TAG = "logged_md5"
EVAL_PREFIX = "eval."
SKIPPED_PREFIXES = ("intervals.",)  # each interval's mean and sd are logged already


def find_train_run(
    client: MlflowClient, experiment_id: str, variant: str, replicate: Replicate
) -> Run | None:
    """The newest training run of ``variant``'s replicate whose weights have its md5."""
    # Variant names are [A-Za-z0-9_-] (params validation), md5s hex: nothing to quote.
    query = (
        f"tags.{STAGE_TAG} = '{TRAIN_STAGE}' and tags.{VARIANT_TAG} = '{variant}' "
        f"and tags.{SEED_TAG} = '{replicate.seed}' "
        f"and tags.{MODEL_MD5_TAG} = '{replicate.model_md5}'"
    )
    runs = client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=1
    )
    return runs[0] if runs else None


def eval_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The evaluation's numeric leaves as the training run's metrics: ``eval.recon.mse``, ..."""
    return {
        EVAL_PREFIX + key: value
        for key, value in metrics.items()
        if not key.startswith(SKIPPED_PREFIXES)
    }


@dataclass(frozen=True)
class Logged:
    """What goes to one replicate's run: artifacts (local file, artifact folder) and metrics."""

    files: tuple[tuple[Path, str], ...]
    metrics: dict[str, float]

    def md5(self) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        for path, folder in self.files:
            digest.update(f"{folder}/{path.name}\0".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()


def what_to_log(inputs: VariantInputs, replicate: Replicate) -> Logged:
    """The variant's evaluation, figures and history, and the replicate's config."""
    files = [(inputs.eval_path, "evaluation"), (config_file(replicate.folder), "config")]
    if inputs.history_path.is_file():
        files.append((inputs.history_path, "history"))
    if inputs.figures_dir.is_dir():
        files += [(png, "figures") for png in sorted(inputs.figures_dir.glob("*.png"))]
    return Logged(tuple(files), eval_metrics(inputs.metrics))


def log_evaluation(client: MlflowClient, run: Run, logged: Logged) -> bool:
    """Log ``logged`` to the finished ``run`` unless its ``logged_md5`` tag says it has it;
    whether it logged."""
    from mlflow.entities import Metric

    digest = logged.md5()
    run_id = run.info.run_id
    if run.data.tags.get(LOGGED_TAG) == digest:
        return False
    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(key, value, now, 0) for key, value in logged.metrics.items()]
    )
    for path, folder in logged.files:
        client.log_artifact(run_id, str(path), folder)
    client.set_tag(run_id, LOGGED_TAG, digest)
    return True


def enrich_train_runs(
    client: MlflowClient, experiment_id: str, inputs: VariantInputs
) -> dict[str, str | None]:
    """Every replicate's training run, found by tag and given the evaluation; ``{seed: run id}``
    (None for a replicate whose run is not in this store, e.g. trained against another one)."""
    found: dict[str, str | None] = {}
    for replicate in inputs.replicates:
        run = find_train_run(client, experiment_id, inputs.variant, replicate)
        if run is None:
            log.warning(
                "%s seed %d: no training run tagged model_md5 %s in this tracking store; "
                "nothing logged to it",
                inputs.variant,
                replicate.seed,
                replicate.model_md5,
            )
            found[str(replicate.seed)] = None
            continue
        if log_evaluation(client, run, what_to_log(inputs, replicate)):
            log.info(
                "%s seed %d: logged the evaluation to training run %s",
                inputs.variant,
                replicate.seed,
                run.info.run_id,
            )
        found[str(replicate.seed)] = run.info.run_id
    return found


# --------------------------------------------------------------------------- compare run

COMPARE_STAGE = "compare"
REPORT_FILE = "compare.md"
DETAIL_FILE = "compare_detail.md"  # every comparison behind compare.md, logged beside it
FIGURES_DIR = "compare"


def report_files(reports_root: Path) -> Logged | None:
    """The report and its figures, or None when compare has written no report here."""
    report = reports_root / REPORT_FILE
    if not report.is_file():
        return None
    detail = reports_root / DETAIL_FILE
    figures = reports_root / FIGURES_DIR
    pngs = sorted(figures.glob("*.png")) if figures.is_dir() else []
    pages = [(report, ""), *([(detail, "")] if detail.is_file() else [])]
    return Logged((*pages, *((png, FIGURES_DIR) for png in pngs)), {})


def log_compare(
    client: MlflowClient, experiment_id: str, reports_root: Path
) -> dict[str, str | bool] | None:
    """Log the compare report once per content; ``{"run_id", "logged"}``, or None without a
    report."""
    files = report_files(reports_root)
    if files is None:
        log.info("%s: no compare report, none logged", reports_root / REPORT_FILE)
        return None
    digest = files.md5()
    query = f"tags.{STAGE_TAG} = '{COMPARE_STAGE}' and tags.{LOGGED_TAG} = '{digest}'"
    same = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if same:
        return {"run_id": same[0].info.run_id, "logged": False}
    tags = {**run_tags(), STAGE_TAG: COMPARE_STAGE}
    run = client.create_run(experiment_id, run_name=COMPARE_STAGE, tags=tags)
    run_id = run.info.run_id
    try:
        for path, folder in files.files:
            client.log_artifact(run_id, str(path), folder or None)
        client.set_tag(run_id, LOGGED_TAG, digest)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    log.info("logged the compare report in run %s", run_id)
    return {"run_id": run_id, "logged": True}


# --------------------------------------------------------------------------- descriptions

# The numbers a person looks at first (those present in the evaluation), then registry.metric.
HEADLINE = tuple(m.detail for m in described())


def architecture(config: SavedConfig) -> str:
    knobs = config.model.model_dump(mode="json", exclude_defaults=True)
    knobs.pop("arch", None)
    shown = ", ".join(f"{key} {value}" for key, value in sorted(knobs.items()))
    return (
        f"{config.model.arch}"
        + (f" ({shown})" if shown else "")
        + f", {config.trainable_params:,} parameters"
    )


def data(config: SavedConfig) -> str:
    colour = "grey" if config.channels == 1 else f"{config.channels} channels"
    crop = config.data.crop.method
    train = config.train
    return (
        f"{config.data.dataset}, {config.image_size}x{config.image_size} {colour} (crop {crop}, "
        f"resample {config.data.resample}); {_count(train.epochs, 'epoch')}, "
        f"batch {train.batch_size}, lr {train.lr:g}; "
        f"seed {config.seed} of {_count(train.seeds, 'replicate')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def headline(metrics: dict[str, float], metric: str) -> str:
    keys = [key for key in HEADLINE if key in metrics] + (
        [metric] if metric not in HEADLINE else []
    )
    return ", ".join(f"{key} {metrics[key]:.4g}" for key in keys if key in metrics)


def version_description(
    config: SavedConfig,
    metrics: dict[str, float],
    metric: str,
    provenance: Provenance,
    model_md5: str,
    fingerprint: str | None = None,
) -> str:
    """A new version's description (``fingerprint``: the id of the data and evaluation its
    metrics are of)."""
    origin = f"git {provenance.commit[:12]}" + (" (dirty tree)" if provenance.dirty else "")
    if provenance.experiment:
        origin += f", DVC experiment `{provenance.experiment}`"
    evaluated = "" if fingerprint is None else f"; data and evaluation fingerprint `{fingerprint}`"
    return "\n\n".join(
        [
            f"**{config.variant}**: {architecture(config)}.",
            f"Data: {data(config)}.",
            f"Evaluation (mean over seeds, test split): {headline(metrics, metric)}{evaluated}.",
            f"Weights md5 {model_md5}; registered from {origin}.",
        ]
    )


def model_description(variant: str, version: int, alias: str, version_text: str) -> str:
    """The registered model's description: the version behind ``alias`` (champion, else latest)."""
    return f"vaelab variant `{variant}`; `@{alias}` is version {version}:\n\n{version_text}"
