"""What ``register`` writes to MLflow besides the registered versions: the training runs'
evaluations, each variant's run, the compare report's run, and the descriptions of models
and versions.

Training runs. ``train`` tags each replicate's run with ``stage=train``, ``variant``,
``seed`` and the md5 of the weights it saved (``model_md5``); :func:`find_train_run` looks a
replicate's run up by them (the newest, when one training was repeated with identical
results). :func:`log_evaluation` gives that run, once per content, the replicate's OWN
evaluation (the detail's ``seeds.<seed>`` section): the headline numbers of
:mod:`vaelab.measures.headline` (and ``registry.metric``) as metrics ``eval.<headline key>``,
beside the loss curves the training logged; and as artifacts that evaluation in full
(``evaluation/<variant>-seed<k>.json``), its figures (``figures/``, from
``reports/<variant>/seed<k>/``), the history (``history/``) and its ``config.json``
(``config/``). The md5 of all of it is the run's ``logged_md5`` tag: a rerun on unchanged
files logs nothing. An evaluation written before per-seed sections gives the runs no numbers
(evaluate again).

The variant's run. The numbers over seeds have one place: a run named ``<variant>`` (tag
``stage=variant``), one per content of the evaluation file, with the headline numbers'
means (``eval.<key>``), standard deviations over seeds (``eval.<key>.sd``) and 95 %
intervals over seeds and images (``eval.<key>.low`` / ``.high``) as metrics, the whole
evaluation file as an artifact, and the params that shape the variant. Its replicates'
training runs are nested under it (their ``mlflow.parentRunId`` tag), so the MLflow UI shows
each variant as one row that opens onto its seeds (:func:`log_variant_run`).

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
import json
import logging
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config.evaluated_on import EVALUATED_ON
from vaelab.io.json_files import flatten
from vaelab.io.metric_files import lookup
from vaelab.measures.headline import described, eval_headline
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
    shaping_params,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger("vaelab.registry")


# --------------------------------------------------------------------------- headline numbers

EVAL_PREFIX = "eval."


def headline_keys(metric: str) -> list[str]:
    """The numbers a run carries as metrics, as dotted keys of the evaluation: the headline
    table's rows, and ``metric`` (registry.metric). A run names each ``eval.<key>``
    (``eval.recon.mse``), as the versions' ``metric.*`` tags and ``registry.metric`` name it,
    not by the DVC table's short headline key."""
    return list(dict.fromkeys([*eval_headline().values(), metric]))


def tagged_keys(metric: str) -> list[str]:
    """The evaluation keys a registered version carries as ``metric.<key>`` tags: the headline
    numbers, those its description leads with, and ``metric``."""
    keys = [*headline_keys(metric), *(m.detail for m in described())]
    return list(dict.fromkeys(keys))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def headline_metrics(tree: dict[str, Any], metric: str) -> dict[str, float]:
    """``{"eval.<key>": value}`` of the headline numbers ``tree`` (an evaluation) has."""
    found = {}
    for key in headline_keys(metric):
        value = _number(lookup(tree, key))
        if value is not None:
            found[EVAL_PREFIX + key] = value
    return found


def spread_metrics(detail: dict[str, Any], metric: str) -> dict[str, float]:
    """The headline numbers over seeds: each mean (``eval.<key>``), its sd over seeds
    (``.sd``) and its 95 % interval over seeds and images (``.low``, ``.high``) where the
    evaluation has them."""
    spreads, intervals = detail.get("sd", {}), detail.get("intervals", {})
    found: dict[str, float] = {}
    for key in headline_keys(metric):
        mean = _number(lookup(detail, key))
        if mean is None:
            continue
        interval = intervals.get(key) if isinstance(intervals, dict) else None
        parts = {
            "": mean,
            ".sd": _number(lookup(spreads, key)) if isinstance(spreads, dict) else None,
            **{
                f".{end}": _number(interval.get(end)) if isinstance(interval, dict) else None
                for end in ("low", "high")
            },
        }
        found |= {f"{EVAL_PREFIX}{key}{part}": v for part, v in parts.items() if v is not None}
    return found


def variant_params(config: SavedConfig) -> dict[str, Any]:
    """The params that shape a variant: its model entry, its training, its data set's
    settings (flattened as the training runs have them)."""
    return shaping_params(
        flatten(
            {
                "variant": config.variant,
                "model": config.model.model_dump(mode="json"),
                "train": config.train.model_dump(mode="json"),
                "data": config.data.model_dump(mode="json"),
            },
            keep_empty=False,
        )
    )


# --------------------------------------------------------------------------- training runs

LOGGED_TAG = "logged_md5"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's: the UI nests a run under the run it names
VARIANT_STAGE = "variant"


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


@dataclass(frozen=True)
class Logged:
    """What goes to one run: artifacts (local file, artifact folder), documents (artifact
    file, JSON content) and metrics."""

    files: tuple[tuple[Path, str], ...]
    metrics: dict[str, float]
    documents: tuple[tuple[str, dict[str, Any]], ...] = ()

    def md5(self) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        for path, folder in self.files:
            digest.update(f"{folder}/{path.name}\0".encode())
            digest.update(path.read_bytes())
        for artifact, content in self.documents:
            digest.update(f"{artifact}\0{json.dumps(content, sort_keys=True)}".encode())
        digest.update(json.dumps(self.metrics, sort_keys=True).encode())
        return digest.hexdigest()


def what_to_log(inputs: VariantInputs, replicate: Replicate, metric: str) -> Logged:
    """The replicate's own evaluation, figures and config, and the variant's history."""
    files = [(config_file(replicate.folder), "config")]
    if inputs.history_path.is_file():
        files.append((inputs.history_path, "history"))
    figures = inputs.figures_of(replicate.seed)
    if figures.is_dir():
        files += [(png, "figures") for png in sorted(figures.glob("*.png"))]
    own = inputs.own_evaluation(replicate.seed)
    if own is None:
        return Logged(tuple(files), {})
    document = {
        "variant": inputs.variant,
        "seed": replicate.seed,
        **own,
        EVALUATED_ON: inputs.detail.get(EVALUATED_ON),
    }
    artifact = f"evaluation/{inputs.variant}-seed{replicate.seed}.json"
    return Logged(tuple(files), headline_metrics(own, metric), ((artifact, document),))


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
    for artifact, content in logged.documents:
        client.log_dict(run_id, content, artifact)
    client.set_tag(run_id, LOGGED_TAG, digest)
    return True


def enrich_train_runs(
    client: MlflowClient, experiment_id: str, inputs: VariantInputs, metric: str
) -> dict[str, Run | None]:
    """Every replicate's training run, found by tag and given its own evaluation; ``{seed:
    run}`` (None for a replicate whose run is not in this store, e.g. trained against another
    one)."""
    found: dict[str, Run | None] = {}
    if inputs.own_evaluation(inputs.replicates[0].seed) is None:
        log.warning(
            "%s: %s has no evaluation per seed (written by an older vaelab): the training runs "
            "get no evaluation of their own; rerun `dvc repro evaluate@%s`",
            inputs.variant,
            inputs.eval_path,
            inputs.variant,
        )
    for replicate in inputs.replicates:
        run = find_train_run(client, experiment_id, inputs.variant, replicate)
        found[str(replicate.seed)] = run
        if run is None:
            log.warning(
                "%s seed %d: no training run tagged model_md5 %s in this tracking store; "
                "nothing logged to it",
                inputs.variant,
                replicate.seed,
                replicate.model_md5,
            )
        elif log_evaluation(client, run, what_to_log(inputs, replicate, metric)):
            log.info(
                "%s seed %d: logged its evaluation to training run %s",
                inputs.variant,
                replicate.seed,
                run.info.run_id,
            )
    return found


# --------------------------------------------------------------------------- variant run


def log_variant_run(
    client: MlflowClient,
    experiment_id: str,
    inputs: VariantInputs,
    metric: str,
    train_runs: dict[str, Run | None],
) -> str:
    """The variant's run for this evaluation (made once per content), with its replicates'
    training runs nested under it; its id."""
    from mlflow.entities import Metric, Param

    logged = Logged(((inputs.eval_path, "evaluation"),), spread_metrics(inputs.detail, metric))
    digest = logged.md5()
    query = (
        f"tags.{STAGE_TAG} = '{VARIANT_STAGE}' and tags.{VARIANT_TAG} = '{inputs.variant}' "
        f"and tags.{LOGGED_TAG} = '{digest}'"
    )
    same = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if same:
        run_id: str = same[0].info.run_id
    else:
        tags = {**run_tags(), STAGE_TAG: VARIANT_STAGE, VARIANT_TAG: inputs.variant}
        run_id = client.create_run(experiment_id, run_name=inputs.variant, tags=tags).info.run_id
        try:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(key, value, now, 0) for key, value in logged.metrics.items()],
                params=[Param(k, str(v)) for k, v in variant_params(inputs.config).items()],
            )
            for path, folder in logged.files:
                client.log_artifact(run_id, str(path), folder)
            client.set_tag(run_id, LOGGED_TAG, digest)
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        log.info("%s: logged the evaluation over seeds in run %s", inputs.variant, run_id)
    for run in train_runs.values():
        if run is not None and run.data.tags.get(PARENT_TAG) != run_id:
            client.set_tag(run.info.run_id, PARENT_TAG, run_id)
    return run_id


@dataclass(frozen=True)
class VariantRuns:
    """A variant's runs in the store: its replicates' training runs and the variant's run."""

    train: dict[str, Run | None]  # seed -> the replicate's training run (None: not in the store)
    variant: str  # the variant run's id

    def first(self, inputs: VariantInputs) -> str | None:
        """The id of the training run of the weights that stand for the variant (the first
        seed's), None when it is not in the store."""
        run = self.train.get(str(inputs.replicates[0].seed))
        return None if run is None else run.info.run_id

    def summary(self) -> dict[str, Any]:
        """What ``metrics/registry.json`` records of them."""
        return {
            # The run of the evaluation over seeds, and each replicate's training run under it.
            "variant_run": self.variant,
            "train_runs": {
                seed: None if run is None else run.info.run_id for seed, run in self.train.items()
            },
        }


def log_runs(
    client: MlflowClient, experiment_id: str, inputs: VariantInputs, metric: str
) -> VariantRuns:
    """Give every replicate's training run its own evaluation and the variant's run the
    evaluation over seeds, with the training runs nested under it."""
    train = enrich_train_runs(client, experiment_id, inputs, metric)
    return VariantRuns(train, log_variant_run(client, experiment_id, inputs, metric, train))


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
            f"Every number: the `evaluation/` artifacts of its source run (its training: "
            f"the replicate's own) and of the run `{config.variant}` (over seeds, with "
            "spreads and intervals).",
            f"Weights md5 {model_md5}; registered from {origin}.",
        ]
    )


def model_description(variant: str, version: int, alias: str, version_text: str) -> str:
    """The registered model's description: the version behind ``alias`` (champion, else latest)."""
    return f"vaelab variant `{variant}`; `@{alias}` is version {version}:\n\n{version_text}"
