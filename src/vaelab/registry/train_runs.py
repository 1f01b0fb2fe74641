"""A variant's training runs, found by tag, get what the later stages measured.

``train`` tags each replicate's run with ``stage=train``, ``variant``, ``seed`` and the
md5 of the weights it saved (``model_md5``); :func:`find_train_run` looks a replicate's
run up by them (the newest, when one training was repeated with identical results).

:func:`log_evaluation` gives that run, once per content, the variant's evaluation:
its numeric leaves as metrics ``eval.<key>`` (``eval.recon.mse``, ``eval.sd.recon.mse``
for the spread over seeds; the bootstrap ``intervals`` are left to the JSON), and as
artifacts the evaluation file (``evaluation/``), the figures (``figures/``), the history
(``history/``) and the replicate's ``config.json`` (``config/``). The md5 of all of it is
the run's ``logged_md5`` tag: a rerun on unchanged files logs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.models.saved import config_file
from vaelab.registry.inputs import Replicate, VariantInputs
from vaelab.tracking import MODEL_MD5_TAG, SEED_TAG, STAGE_TAG, TRAIN_STAGE, VARIANT_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger("vaelab.registry")

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
        f"and tags.{SEED_TAG} = '{replicate.seed}' and tags.{MODEL_MD5_TAG} = '{replicate.model_md5}'"
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
    """Log ``logged`` to the finished ``run`` unless its ``logged_md5`` tag says it has it; whether it logged."""
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
