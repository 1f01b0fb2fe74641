"""The ``register`` stage: every variant into the MLflow model registry, with aliases.

For each variant of ``params.models``, the registered model ``<registry.prefix>-<variant>``
gets a new version when ``models/<variant>/model.pt`` is new to it (matched on the
``model_md5`` version tag), logged as the pyfunc of :mod:`.pyfunc` in a run of the
``vaelab`` experiment. Aliases, not the deprecated stages: ``champion`` moves to a new
version only when it beats the champion on ``registry.metric`` in the direction
``registry.mode``; ``latest`` is MLflow's built-in alias for the newest version (the
name is reserved: it resolves by itself and cannot be set). ``metrics/registry.json``
records what happened and why.
"""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.config import Params
from vaelab.config.registry import RegistryConfig
from vaelab.errors import UserError
from vaelab.io.atomic import write_json
from vaelab.models.saved import SavedConfig, config_file, load_config, require_replicates, weights_file, weights_md5
from vaelab.registry.champion import (
    CHAMPION,
    PENDING_TAG,
    ChampionDecision,
    ChampionRule,
    champion_rule,
    decide_champion,
)
from vaelab.registry.connect import connect, display_uri
from vaelab.tracking import (
    MODEL_MD5_TAG,
    SEED_TAG,
    STAGE_TAG,
    TRAIN_STAGE,
    VARIANT_TAG,
    Provenance,
    flatten,
    is_committed,
    provenance,
    tracking_uri,
    use_experiment,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("vaelab.registry")

__all__ = ["decide_champion", "register_variant", "run_register"]

LATEST = "latest"  # MLflow's reserved alias for the newest version
METRIC_TAG = "metric."  # version tag prefix: metric.recon.mse = "0.0123"
REGISTRY_FILE = "registry.json"
PARAMS_FILE = Path("params.yaml")
LOGGED_MODEL_NAME = "model"
TRAIN_RUN_TAG = "train_run_id"
MODEL_CODE = Path(__file__).with_name("model_code.py")
# What the pyfunc imports when it loads (vaelab itself is not on PyPI: serve from an
# environment where it is installed, i.e. `--env-manager local`).
PYFUNC_DISTRIBUTIONS = ("mlflow", "torch", "numpy", "pydantic", "pyyaml")


def pyfunc_requirements() -> list[str]:
    """Pins of the installed versions, given explicitly so that log_model skips its slow inference."""
    pins = []
    for dist in PYFUNC_DISTRIBUTIONS:
        try:
            # A local label such as torch's "+cpu" names no version pip can fetch from PyPI.
            pins.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins


def numeric_leaves(payload: dict[str, Any]) -> dict[str, float]:
    """Nested metrics → ``{"recon.mse": 0.01, ...}``; strings, lists, booleans and nulls dropped."""
    return {
        key: float(value)
        for key, value in flatten(payload).items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


@dataclass(frozen=True)
class VariantInputs:
    """Everything registration needs from one variant's files, read before any write."""

    variant: str
    name: str  # the registered model name, <prefix>-<variant>
    folder: Path
    seed: int  # of the replicate that stands for the variant
    config: SavedConfig
    model_md5: str
    metrics: dict[str, float]


def _read_json(path: Path, stage: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun `dvc repro {stage}`") from None


def read_variant(variant: str, cfg: RegistryConfig, models_root: Path, metrics_root: Path) -> VariantInputs:
    """Check and read ``models/<variant>/`` and ``metrics/eval/<variant>.json``; UserError if unusable."""
    try:
        # The replicate trained with params.seed stands for the variant in the registry.
        seed, folder = require_replicates(models_root / variant, variant)[0]
    except UserError as err:
        raise UserError(f"{err} (register needs every variant in params.yaml models: trained)") from None
    eval_path = metrics_root / "eval" / f"{variant}.json"
    if not eval_path.is_file():
        raise UserError(f"{eval_path}: not found; run `dvc repro evaluate@{variant}` first")
    payload = _read_json(eval_path, f"evaluate@{variant}")
    if not isinstance(payload, dict):
        raise UserError(f"{eval_path}: expected a JSON object of metrics; rerun `dvc repro evaluate@{variant}`")
    metrics = numeric_leaves(payload)
    if cfg.metric not in metrics:
        raise UserError(
            f"{eval_path}: no numeric {cfg.metric!r}, the metric registry.metric ranks champions by; "
            f"set registry.metric in params.yaml to one of: {', '.join(sorted(metrics)) or '(none found)'}"
        )
    return VariantInputs(
        variant=variant,
        name=f"{cfg.prefix}-{variant}",
        folder=folder,
        seed=seed,
        config=load_config(config_file(folder)),
        model_md5=weights_md5(folder),
        metrics=metrics,
    )


def find_train_run(client: MlflowClient, experiment_id: str, inputs: VariantInputs) -> str | None:
    """The id of the newest training run whose weights are the variant's (tags ``stage=train``,
    ``variant``, ``seed``, ``model_md5``), or None when this store has none."""
    # Variant names are [A-Za-z0-9_-] (params validation), md5s hex: nothing to quote.
    query = (
        f"tags.{STAGE_TAG} = '{TRAIN_STAGE}' and tags.{VARIANT_TAG} = '{inputs.variant}' "
        f"and tags.{SEED_TAG} = '{inputs.seed}' and tags.{MODEL_MD5_TAG} = '{inputs.model_md5}'"
    )
    runs = client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0].info.run_id if runs else None


def _metric_tag(version: ModelVersion, metric: str) -> float | None:
    raw = (version.tags or {}).get(METRIC_TAG + metric)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        log.warning("%s version %s: tag %s%s = %r is not a number; treated as missing",
                    version.name, version.version, METRIC_TAG, metric, raw)
        return None


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    # Names are "<prefix>-<variant>", both validated to [A-Za-z0-9_.-], so no quoting issues.
    return list(client.search_model_versions(f"name='{name}'"))


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    from mlflow.exceptions import RestException

    registered = client.search_registered_models(f"name='{name}'")
    if not registered or CHAMPION not in (registered[0].aliases or {}):
        return None
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except RestException as err:
        # The alias can outlive its version on some stores; treat it as no champion, loudly.
        log.warning("%s: alias %s points at no version (%s); treated as no champion", name, CHAMPION, err.message)
        return None


def _log_and_register(
    inputs: VariantInputs, prov: Provenance, rule: ChampionRule, train_run_id: str | None
) -> ModelVersion:
    """One MLflow run that logs the pyfunc, then a registry version tagged for idempotence."""
    import mlflow
    import numpy as np

    from vaelab.registry.pyfunc import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, model_signature

    config = inputs.config
    tags = {
        **prov.tags(),
        VARIANT_TAG: inputs.variant,
        MODEL_MD5_TAG: inputs.model_md5,
        "dataset": config.data.dataset,
        **({TRAIN_RUN_TAG: train_run_id} if train_run_id else {}),
    }
    with mlflow.start_run(run_name=f"register-{inputs.variant}") as run:
        mlflow.set_tags({**tags, STAGE_TAG: "register"})
        mlflow.log_params(flatten({"model": config.model.model_dump(mode="json"), "image_size": config.image_size,
                                   "channels": config.channels}))
        mlflow.log_metrics(inputs.metrics)
        size, channels = config.image_size, config.channels
        info = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            # Models-from-code: MLflow stores this file, not a pickle, and runs it to load.
            python_model=str(MODEL_CODE),
            artifacts={
                WEIGHTS_ARTIFACT: str(weights_file(inputs.folder)),
                CONFIG_ARTIFACT: str(config_file(inputs.folder)),
            },
            # No code_paths: they only prepend a folder to sys.path at load time, so in a
            # process that has already imported vaelab (the CLI, a notebook) the installed
            # copy would win, while a fresh serving process would take the shipped one: two
            # behaviours for one version. The installed vaelab is used everywhere instead;
            # the weights load strictly, so a model that no longer fits the code fails loudly,
            # and the git_commit tag says which code to check out.
            pip_requirements=pyfunc_requirements(),
            signature=model_signature(),
            # One black image: documents the request format (serving_input_example.json)
            # and makes MLflow load and call the logged model once before it is registered.
            input_example=(np.zeros((1, size, size, channels), dtype=np.uint8), {"mode": "reconstruct"}),
            metadata={"vaelab_variant": inputs.variant, "arch": config.model.arch},
        )
        log.info("%s: logged the pyfunc in run %s", inputs.name, run.info.run_id)
    version_tags = {
        **tags,
        **{METRIC_TAG + key: repr(value) for key, value in inputs.metrics.items()},
        # Registered where champion could not move: it competes in a later plain repro.
        **({} if rule.may_move else {PENDING_TAG: "true"}),
    }
    return mlflow.register_model(info.model_uri, inputs.name, tags=version_tags)


def register_variant(
    client: MlflowClient, experiment_id: str, inputs: VariantInputs, cfg: RegistryConfig, prov: Provenance,
    rule: ChampionRule,
) -> dict[str, Any]:
    """Register (or reuse) one variant's version, move the aliases, and say what happened."""
    train_run_id = find_train_run(client, experiment_id, inputs)
    same = [v for v in _versions(client, inputs.name) if (v.tags or {}).get(MODEL_MD5_TAG) == inputs.model_md5]
    if same:
        version = min(same, key=lambda v: int(v.version))
        log.info("%s: model unchanged (md5 %s), reusing version %s", inputs.name, inputs.model_md5, version.version)
    else:
        version = _log_and_register(inputs, prov, rule, train_run_id)
        log.info("%s: registered version %s", inputs.name, version.version)
    number = int(version.version)

    champion = _champion(client, inputs.name)
    champion_number = None if champion is None else int(champion.version)
    if rule.may_move:
        pending = bool(same) and (version.tags or {}).get(PENDING_TAG) == "true"
        decision = decide_champion(
            metric=cfg.metric,
            mode=cfg.mode,
            candidate=number,
            candidate_value=inputs.metrics[cfg.metric],
            champion=champion_number,
            champion_value=None if champion is None else _metric_tag(champion, cfg.metric),
            # A version registered in an experiment competes the first time a plain repro meets it.
            is_new=not same or pending,
        )
        if decision.moves:
            client.set_registered_model_alias(inputs.name, CHAMPION, str(number))
        if pending:
            client.delete_model_version_tag(inputs.name, str(number), PENDING_TAG)
    else:
        decision = ChampionDecision(False, rule.held_reason(inputs.variant, number, champion_number))
    if rule.alias:
        client.set_registered_model_alias(inputs.name, rule.alias, str(number))
    log.info("%s: %s", inputs.name, decision.reason)

    aliases = {alias: int(v) for alias, v in (client.get_registered_model(inputs.name).aliases or {}).items()}
    # MLflow reserves "latest": it cannot be set, and @latest always resolves to the newest version.
    aliases[LATEST] = int(client.get_model_version_by_alias(inputs.name, LATEST).version)
    return {
        "name": inputs.name,
        "version": number,
        "registered": not same,
        "model_md5": inputs.model_md5,
        "metric": inputs.metrics[cfg.metric],
        "aliases": dict(sorted(aliases.items())),
        "champion": {
            "version": aliases.get(CHAMPION),
            "moved": decision.moves,
            "reason": decision.reason,
            "rule": rule.kind,
        },
        "uri": f"models:/{inputs.name}@{rule.alias or CHAMPION}",
        "train_run": train_run_id,
    }


def run_register(
    params: Params,
    *,
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    params_file: Path = PARAMS_FILE,
) -> dict[str, Any]:
    """Register every variant of ``params.models``; write and return ``metrics/registry.json``'s content."""
    cfg = params.registry
    # Every file is checked before MLflow is touched, so a missing one writes nothing.
    variants = [read_variant(v, cfg, models_root, metrics_root) for v in params.models]
    uri = tracking_uri()
    prov = provenance()
    rule = champion_rule(prov, is_committed(params_file))
    log.info("registering %d variant(s) in %s", len(variants), display_uri(uri))
    with connect(uri, cfg) as client:
        experiment_id = use_experiment(uri)
        results = {
            inputs.variant: register_variant(client, experiment_id, inputs, cfg, prov, rule) for inputs in variants
        }
    report = {
        "metric": cfg.metric,
        "mode": cfg.mode,
        "prefix": cfg.prefix,
        # repro (champion may move), experiment (alias exp-<name> instead) or uncommitted-params.
        "champion_rule": rule.summary(),
        "variants": results,
    }
    write_json(metrics_root / REGISTRY_FILE, report)
    return report
