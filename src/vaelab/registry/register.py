"""The ``register`` stage: every variant into the MLflow model registry, with aliases.

For each variant of ``params.models``, the registered model ``<registry.prefix>-<variant>``
gets a new version when ``models/<variant>/seed<k>/model.pt`` (its first seed) is new to it
(matched on the ``model_md5`` version tag), logged as the pyfunc of :mod:`.pyfunc`, named
after the variant, into the training run that made those weights (so the version's source
run is that training, and the training run's page lists the version; a ``register-<variant>``
run of its own when that run is not in the store), and tagged with its data and evaluation
fingerprint (:mod:`.inputs`) and its headline numbers (a few dozen tags; every number is in
the runs' ``evaluation/`` artifacts). Aliases, not the deprecated stages:
``champion`` moves by the rule of :mod:`.champion` (a plain repro of committed params, to a
version that beats it on ``registry.metric`` among the versions evaluated like the current
one; never inside a DVC experiment, which sets ``exp-<name>`` instead);
``latest`` is MLflow's built-in alias for the newest version (reserved: it resolves by
itself and cannot be set).

In a plain repro, a reused version whose fingerprint is not the current evaluation's (the
evaluation settings changed, or it was registered before fingerprints) takes the current
evaluation's fingerprint and ``metric.*`` tags: the same weights, evaluated as the
current params say.

The stage also gives each replicate's training run its own evaluation, figures, history and
config, gives each variant a run of its evaluation over seeds with the training runs nested
under it, logs the compare report once per content, and keeps the registered models' and
versions' descriptions (all in :mod:`.runs`).
``metrics/registry.json`` records what happened and why.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vaelab.config import Params
from vaelab.config.registry_config import RegistryConfig
from vaelab.io.json_files import write_json
from vaelab.models.saved import config_file, load_trained, weights_file
from vaelab.registry.champion import (
    CHAMPION,
    METRIC_TAG,
    PENDING_TAG,
    ChampionDecision,
    ChampionRule,
    Peers,
    champion_rule,
    decide_champion,
    decide_incomparable,
    find_peers,
    metric_tag,
)
from vaelab.registry.inputs import (
    FINGERPRINT_TAG,
    VariantInputs,
    of_tags,
    read_variant,
    why_not_compared,
)
from vaelab.registry.runs import (
    log_compare,
    log_runs,
    model_description,
    spread_metrics,
    tagged_keys,
    variant_params,
    version_description,
)
from vaelab.tracking import (
    BASELINE_TAG,
    COMMIT_TAG,
    DIRTY_TAG,
    EXP_NAME_TAG,
    MODEL_MD5_TAG,
    STAGE_TAG,
    VARIANT_TAG,
    Provenance,
    is_committed,
    provenance,
    tracking_uri,
    use_experiment,
)
from vaelab.tracking_http import connect, display_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

log = logging.getLogger("vaelab.registry")

__all__ = ["decide_champion", "register_variant", "run_register"]

LATEST = "latest"  # MLflow's reserved alias for the newest version
TRAIN_RUN_TAG = "train_run_id"
DECODER_TAG = "decoder_uri"  # version tag: runs:/<register run>/<variant>-decoder
REGISTER_STAGE = "register"
REGISTRY_FILE = "registry.json"
PARAMS_FILE = Path("params.yaml")
MODEL_CODE = Path(__file__).with_name("model_code.py")
DECODER_CODE = Path(__file__).with_name("decoder_code.py")
# What the pyfunc imports when it loads (vaelab itself is not on PyPI: serve from an
# environment where it is installed, i.e. `--env-manager local`).
PYFUNC_DISTRIBUTIONS = ("mlflow", "torch", "numpy", "pydantic", "pyyaml")


def pyfunc_requirements() -> list[str]:
    """Pins of the installed versions, given explicitly so that log_model skips its slow
    inference."""
    pins = []
    for dist in PYFUNC_DISTRIBUTIONS:
        try:
            # A local label such as torch's "+cpu" names no version pip can fetch from PyPI.
            pins.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(dist)
    return pins


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
        log.warning(
            "%s: alias %s points at no version (%s); treated as no champion",
            name,
            CHAMPION,
            err.message,
        )
        return None


def _pyfunc_kwargs(inputs: VariantInputs, latent_dim: int, cfg: RegistryConfig) -> dict[str, Any]:
    """What both logged models of a version share: artifacts, requirements, metadata, and
    the request limit (model_config)."""
    from vaelab.registry.pyfunc import CONFIG_ARTIFACT, WEIGHTS_ARTIFACT, serving_config

    return {
        "artifacts": {
            WEIGHTS_ARTIFACT: str(weights_file(inputs.folder)),
            CONFIG_ARTIFACT: str(config_file(inputs.folder)),
        },
        # No code_paths: they only prepend a folder to sys.path at load time, so in a
        # process that has already imported vaelab (the CLI, a notebook) the installed
        # copy would win, while a fresh serving process would take the shipped one: two
        # behaviours for one version. The installed vaelab is used everywhere instead;
        # the weights load strictly, so a model that no longer fits the code fails loudly,
        # and the git_commit tag says which code to check out.
        "pip_requirements": pyfunc_requirements(),
        "model_config": serving_config(cfg),
        "metadata": {
            "vaelab_variant": inputs.variant,
            "arch": inputs.config.model.arch,
            "latent_dim": latent_dim,
        },
    }


def _log_decoder(inputs: VariantInputs, run_id: str, latent_dim: int, cfg: RegistryConfig) -> str:
    """Log ``<variant>-decoder`` (latents in, images out: a second input schema needs a
    second logged model) into the active run; returns its ``runs:/`` URI."""
    import mlflow
    import numpy as np

    from vaelab.registry.pyfunc import decoder_name, decoder_signature

    shared = _pyfunc_kwargs(inputs, latent_dim, cfg)
    name = decoder_name(inputs.variant)
    mlflow.pyfunc.log_model(
        name=name,
        python_model=str(DECODER_CODE),
        signature=decoder_signature(inputs.config.image_size, inputs.config.channels, latent_dim),
        input_example=np.zeros((1, latent_dim), dtype=np.float32),
        **{**shared, "metadata": {**shared["metadata"], "role": "decoder"}},
    )
    return f"runs:/{run_id}/{name}"


def _run_tags(inputs: VariantInputs, prov: Provenance, train_run_id: str | None) -> dict[str, str]:
    """The tags the register run and its version share: provenance, variant, weights,
    fingerprint, and the first seed's training run."""
    return {
        **prov.tags(),
        VARIANT_TAG: inputs.variant,
        MODEL_MD5_TAG: inputs.model_md5,
        "dataset": inputs.config.data.dataset,
        **inputs.fingerprint.tags(),
        **({TRAIN_RUN_TAG: train_run_id} if train_run_id else {}),
    }


def _log_images_model(inputs: VariantInputs, shared: dict[str, Any]) -> ModelInfo:
    """Log ``<variant>`` (images in: the model that is registered) into the active run."""
    import mlflow
    import numpy as np

    from vaelab.registry.pyfunc import decoder_name, image_signature

    size, channels = inputs.config.image_size, inputs.config.channels
    info: ModelInfo = mlflow.pyfunc.log_model(
        # Named after the variant: runs:/<run id>/<variant> and the UI's model list say which.
        name=inputs.variant,
        # Models-from-code: MLflow stores this file, not a pickle, and runs it to load.
        python_model=str(MODEL_CODE),
        signature=image_signature(size, channels),
        # One black image: documents the request format (serving_input_example.json)
        # and makes MLflow load and call the logged model once before it is registered.
        input_example=(
            np.zeros((1, size, size, channels), dtype=np.uint8),
            {"mode": "reconstruct"},
        ),
        **{
            **shared,
            "metadata": {
                **shared["metadata"],
                "role": "images",
                "decoder": decoder_name(inputs.variant),
            },
        },
    )
    return info


def _log_and_register(
    inputs: VariantInputs,
    prov: Provenance,
    rule: ChampionRule,
    cfg: RegistryConfig,
    train_run_id: str | None,
) -> ModelVersion:
    """Log the pyfunc and its decoder into the training run of the weights (so the version's
    source run is that training), then register a version tagged for idempotence. Without that
    run in this store, into a ``register-<variant>`` run of its own."""
    import mlflow

    latent_dim = load_trained(inputs.folder)[0].latent_dim
    shared = _pyfunc_kwargs(inputs, latent_dim, cfg)
    tags = _run_tags(inputs, prov, train_run_id)
    if train_run_id is not None:
        # The finished training run, reopened (and ended FINISHED again) to take the models.
        opened = mlflow.start_run(run_id=train_run_id)
    else:
        opened = mlflow.start_run(run_name=f"{REGISTER_STAGE}-{inputs.variant}")
    with opened as run:
        if train_run_id is None:
            mlflow.set_tags({**tags, STAGE_TAG: REGISTER_STAGE})
            mlflow.log_params(variant_params(inputs.config))
            mlflow.log_artifact(str(inputs.eval_path), "evaluation")
        info = _log_images_model(inputs, shared)
        decoder_uri = _log_decoder(inputs, run.info.run_id, latent_dim, cfg)
        if train_run_id is None:
            # The metrics after both models, attached to the image model in the same call
            # (logged before, log_model would read back each metric's history to attach it);
            # a training run's own numbers were logged before and are attached that way.
            mlflow.log_metrics(spread_metrics(inputs.detail, cfg.metric), model_id=info.model_id)
        log.info("%s: logged the pyfunc and its decoder in run %s", inputs.name, run.info.run_id)
    version_tags = {
        **tags,
        DECODER_TAG: decoder_uri,
        **_metric_tags(inputs, cfg.metric),
        # Registered where champion could not move: it competes in a later plain repro.
        **({} if rule.may_move else {PENDING_TAG: "true"}),
    }
    return mlflow.register_model(info.model_uri, inputs.name, tags=version_tags)


def _metric_tags(inputs: VariantInputs, metric: str) -> dict[str, str]:
    """The version's ``metric.<key>`` tags: the variant's headline numbers (means over seeds)
    and ``metric``; every other number is in the evaluation artifacts."""
    return {
        METRIC_TAG + key: repr(inputs.metrics[key])
        for key in tagged_keys(metric)
        if key in inputs.metrics
    }


def _retag(
    client: MlflowClient, inputs: VariantInputs, found: ModelVersion, metric: str
) -> ModelVersion:
    """Give a reused version the current evaluation's fingerprint and ``metric.*`` tags (and
    drop the metric tags the current evaluation has not)."""
    current = {**inputs.fingerprint.tags(), **_metric_tags(inputs, metric)}
    for key in sorted(set(found.tags or {}) - set(current)):
        if key.startswith(METRIC_TAG):
            client.delete_model_version_tag(inputs.name, found.version, key)
    for key, value in current.items():
        client.set_model_version_tag(inputs.name, found.version, key, value)
    log.info(
        "%s: version %s takes the current evaluation's tags (fingerprint %s, was %s)",
        inputs.name,
        found.version,
        inputs.fingerprint.id,
        (found.tags or {}).get(FINGERPRINT_TAG, "none"),
    )
    return client.get_model_version(inputs.name, found.version)


def _trim(client: MlflowClient, name: str, found: ModelVersion, metric: str) -> ModelVersion:
    """Drop the ``metric.*`` tags of a version registered when every number of the evaluation
    was one (hundreds of tags): those :func:`tagged_keys` names stay."""
    kept = {METRIC_TAG + key for key in tagged_keys(metric)}
    extra = sorted(k for k in (found.tags or {}) if k.startswith(METRIC_TAG) and k not in kept)
    if not extra:
        return found
    for key in extra:
        client.delete_model_version_tag(name, found.version, key)
    log.info("%s: version %s drops %d metric tags", name, found.version, len(extra))
    return client.get_model_version(name, found.version)


def _add_decoder(
    client: MlflowClient, inputs: VariantInputs, found: ModelVersion, cfg: RegistryConfig
) -> ModelVersion:
    """A version registered before decoders were logged gets one, in its own run (same weights:
    same md5)."""
    import mlflow

    # Every version register logs comes from a run, so it has a run id.
    run_id = cast(str, found.run_id)
    with mlflow.start_run(run_id=run_id):
        uri = _log_decoder(inputs, run_id, load_trained(inputs.folder)[0].latent_dim, cfg)
    client.set_model_version_tag(inputs.name, found.version, DECODER_TAG, uri)
    log.info("%s: version %s had no decoder; logged %s", inputs.name, found.version, uri)
    return client.get_model_version(inputs.name, found.version)


def _origin(tags: dict[str, str]) -> Provenance:
    """The provenance a version was registered with, from its tags."""
    dirty = tags.get(DIRTY_TAG)
    return Provenance(
        tags.get(COMMIT_TAG, "unknown"),
        None if dirty in (None, "unknown") else dirty == "true",
        tags.get(EXP_NAME_TAG),
        tags.get(BASELINE_TAG),
    )


def describe(
    client: MlflowClient,
    inputs: VariantInputs,
    number: int,
    cfg: RegistryConfig,
    *,
    refresh: bool = False,
) -> None:
    """Give the version a description if it has none (a new one when ``refresh``: its tags
    changed), and the registered model its champion's (else its newest version's)."""
    current = client.get_model_version(inputs.name, str(number))
    if refresh or not current.description:
        tags = current.tags or {}
        metrics = {
            key.removeprefix(METRIC_TAG): float(value)
            for key, value in tags.items()
            if key.startswith(METRIC_TAG)
        }
        text = version_description(
            inputs.config,
            metrics or inputs.metrics,
            cfg.metric,
            _origin(tags),
            inputs.model_md5,
            tags.get(FINGERPRINT_TAG),
        )
        client.update_model_version(inputs.name, str(number), description=text)
    registered = client.get_registered_model(inputs.name)
    alias = CHAMPION if CHAMPION in (registered.aliases or {}) else LATEST
    shown = client.get_model_version_by_alias(inputs.name, alias)
    text = model_description(inputs.variant, int(shown.version), alias, shown.description or "")
    if registered.description != text:
        client.update_registered_model(inputs.name, description=text)


def _reuse(
    client: MlflowClient,
    inputs: VariantInputs,
    same: list[ModelVersion],
    cfg: RegistryConfig,
    rule: ChampionRule,
) -> tuple[ModelVersion, dict[str, Any] | None, bool]:
    """The version of these weights, given a decoder if it lacks one and, in a plain repro, the
    current evaluation's tags if its fingerprint is another; with what was retagged (None: nothing)
    and whether the version has to compete as if new (it was not comparable before)."""
    found = min(same, key=lambda v: int(v.version))
    log.info(
        "%s: model unchanged (md5 %s), reusing version %s",
        inputs.name,
        inputs.model_md5,
        found.version,
    )
    if DECODER_TAG not in (found.tags or {}):
        found = _add_decoder(client, inputs, found, cfg)
    found = _trim(client, inputs.name, found, cfg.metric)
    tags = found.tags or {}
    if not rule.may_move or tags.get(FINGERPRINT_TAG) == inputs.fingerprint.id:
        return found, None, False
    why = why_not_compared(
        inputs.fingerprint, of_tags(tags, f"{inputs.name} version {found.version}"), cfg.metric
    )
    retagged = {
        "version": int(found.version),
        "fingerprint_was": tags.get(FINGERPRINT_TAG),
        "why": why,
    }
    return _retag(client, inputs, found, cfg.metric), retagged, why is not None


def _decide(
    client: MlflowClient,
    inputs: VariantInputs,
    cfg: RegistryConfig,
    rule: ChampionRule,
    number: int,
    is_new: bool,
    peers: Peers,
) -> ChampionDecision:
    """Where champion goes (moving the alias), and why."""
    champion = _champion(client, inputs.name)
    champion_number = None if champion is None else int(champion.version)
    not_compared = peers.not_compared.get(champion_number) if champion_number is not None else None
    if not rule.may_move:
        why = None if not_compared is None else not_compared.reason
        return ChampionDecision(
            False, rule.held_reason(inputs.variant, number, champion_number, why)
        )
    value = inputs.metrics[cfg.metric]
    if not_compared is not None:
        decision = decide_incomparable(
            metric=cfg.metric,
            mode=cfg.mode,
            candidate=number,
            champion=not_compared.version,
            not_compared=not_compared.reason,
            contenders=peers.contenders(number, value),
        )
    else:
        decision = decide_champion(
            metric=cfg.metric,
            mode=cfg.mode,
            candidate=number,
            candidate_value=value,
            champion=champion_number,
            champion_value=None if champion is None else metric_tag(champion, cfg.metric),
            is_new=is_new,
        )
    if decision.target is not None:
        client.set_registered_model_alias(inputs.name, CHAMPION, str(decision.target))
    return decision


def _move_aliases(
    client: MlflowClient,
    inputs: VariantInputs,
    cfg: RegistryConfig,
    rule: ChampionRule,
    found: ModelVersion,
    reused: bool,
    newly_compared: bool,
    peers: Peers,
) -> ChampionDecision:
    """Move champion (:func:`_decide`) and an experiment's alias to the version; a pending
    version that competed loses its pending tag."""
    number = int(found.version)
    pending = reused and (found.tags or {}).get(PENDING_TAG) == "true"
    # A version registered in an experiment competes the first time a plain repro meets it, and
    # so does one that meets the current evaluation for the first time (it was not comparable).
    decision = _decide(
        client, inputs, cfg, rule, number, not reused or pending or newly_compared, peers
    )
    if rule.may_move and pending:
        client.delete_model_version_tag(inputs.name, str(number), PENDING_TAG)
    if rule.alias:
        client.set_registered_model_alias(inputs.name, rule.alias, str(number))
    return decision


def _aliases(client: MlflowClient, name: str) -> dict[str, int]:
    """The registered model's aliases and the versions they point at, ``latest`` included."""
    aliases = {
        alias: int(v) for alias, v in (client.get_registered_model(name).aliases or {}).items()
    }
    # MLflow reserves "latest": it cannot be set, and @latest always resolves to the newest version.
    aliases[LATEST] = int(client.get_model_version_by_alias(name, LATEST).version)
    return aliases


def register_variant(
    client: MlflowClient,
    experiment_id: str,
    inputs: VariantInputs,
    cfg: RegistryConfig,
    prov: Provenance,
    rule: ChampionRule,
) -> dict[str, Any]:
    """Register (or reuse) one variant's version, move the aliases, and say what happened."""
    runs = log_runs(client, experiment_id, inputs, cfg.metric)
    same = [
        v
        for v in _versions(client, inputs.name)
        if (v.tags or {}).get(MODEL_MD5_TAG) == inputs.model_md5
    ]
    if same:
        found, retagged, newly_compared = _reuse(client, inputs, same, cfg, rule)
    else:
        found = _log_and_register(inputs, prov, rule, cfg, runs.first(inputs))
        retagged, newly_compared = None, False
        log.info("%s: registered version %s", inputs.name, found.version)
    number = int(found.version)

    peers = find_peers(_versions(client, inputs.name), inputs.fingerprint, cfg.metric)
    decision = _move_aliases(client, inputs, cfg, rule, found, bool(same), newly_compared, peers)
    log.info("%s: %s", inputs.name, decision.reason)
    for skipped in peers.not_compared.values():
        log.info("%s: version %d not compared: %s", inputs.name, skipped.version, skipped.reason)
    describe(client, inputs, number, cfg, refresh=retagged is not None)

    aliases = _aliases(client, inputs.name)
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
        # What this evaluation was measured on; the versions ranked against it and those not.
        "fingerprint": inputs.fingerprint.summary(cfg.metric),
        "compared": peers.compared(),
        "not_compared": [skipped.summary() for skipped in peers.not_compared.values()],
        "retagged": retagged,
        "uri": f"models:/{inputs.name}@{rule.alias or CHAMPION}",
        # The logged decoder (latents -> images) of this version.
        "decoder_uri": found.tags[DECODER_TAG],
        **runs.summary(),
    }


def run_register(
    params: Params,
    *,
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
    reports_root: Path = Path("reports"),
    params_file: Path = PARAMS_FILE,
) -> dict[str, Any]:
    """Register every variant of ``params.models``; write and return
    ``metrics/registry.json``'s content."""
    cfg = params.registry
    # Every file is checked before MLflow is touched, so a missing one writes nothing.
    variants = [
        read_variant(v, cfg, models_root, metrics_root, reports_root) for v in params.models
    ]
    uri = tracking_uri()
    prov = provenance()
    rule = champion_rule(prov, is_committed(params_file))
    log.info("registering %d variant(s) in %s (%s)", len(variants), display_uri(uri), rule.kind)
    with connect(uri, cfg) as client:
        experiment_id = use_experiment(uri)
        results = {
            inputs.variant: register_variant(client, experiment_id, inputs, cfg, prov, rule)
            for inputs in variants
        }
        compare = log_compare(client, experiment_id, reports_root)
    report = {
        "metric": cfg.metric,
        "mode": cfg.mode,
        "prefix": cfg.prefix,
        # repro (champion may move), experiment (alias exp-<name> instead) or uncommitted-params.
        "champion_rule": rule.summary(),
        "compare_run": compare,
        "variants": results,
    }
    write_json(metrics_root / REGISTRY_FILE, report)
    return report
