"""``vaelab promote <variant> [--version N | --alias exp-x] [--force]``: move ``champion`` by hand.

The one way besides a plain ``dvc repro`` of committed params to move ``champion``
(:mod:`.champion`): to a version number, to the version an alias points at (an
experiment's ``exp-<name>``), or, with neither, to the version of the weights in
``models/<variant>/`` (the first seed, matched on the ``model_md5`` tag).

Champion is the model for the data of the current params: a version whose fingerprint
does not compare with the workspace's evaluation (``models/<variant>/`` and
``metrics/detail/eval/<variant>.json``, :mod:`.inputs`) on ``registry.metric`` is
refused, naming what differs, unless ``force``; the next plain ``dvc repro`` of these
params moves a forced champion back to the best version evaluated like them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.config import Params
from vaelab.errors import UserError
from vaelab.registry.champion import CHAMPION, PENDING_TAG
from vaelab.registry.inputs import Fingerprint, of_tags, read_variant, why_not_compared
from vaelab.tracking import MODEL_MD5_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("vaelab.registry")


@dataclass(frozen=True)
class Promotion:
    name: str
    version: int
    previous: int | None  # the champion before, None when there was none
    fingerprint: str | None  # the promoted version's, None when it has none
    checked: bool  # whether it was checked against the workspace's evaluation (not with force)


def current_fingerprint(
    params: Params, variant: str, models_root: Path, metrics_root: Path
) -> Fingerprint:
    """The fingerprint of the workspace's evaluation of ``variant``; a UserError says how to get
    one."""
    try:
        return read_variant(
            variant, params.registry, models_root, metrics_root, Path("reports")
        ).fingerprint
    except UserError as err:
        raise UserError(
            f"{err} (promote checks the version against the workspace's evaluation; "
            "--force skips the check)"
        ) from None


def _target(
    client: MlflowClient,
    name: str,
    variant: str,
    version: int | None,
    alias: str | None,
    models_root: Path,
) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    if version is not None:
        try:
            return client.get_model_version(name, str(version))
        except MlflowException:
            raise UserError(
                f"{name} has no version {version}; see `metrics/registry.json` or the MLflow UI"
            ) from None
    if alias is not None:
        aliases = client.get_registered_model(name).aliases or {}
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "(none)"
            raise UserError(f"{name} has no alias {alias!r} (its aliases: {known})")
        return client.get_model_version_by_alias(name, alias)
    from vaelab.models.saved import require_replicates, weights_md5

    md5 = weights_md5(require_replicates(models_root / variant, variant)[0][1])
    same = [
        v
        for v in client.search_model_versions(f"name='{name}'")
        if (v.tags or {}).get(MODEL_MD5_TAG) == md5
    ]
    if not same:
        raise UserError(
            f"{models_root / variant}: these weights (md5 {md5}) are not registered in {name}; "
            "run `dvc repro register` first, or give --version N or --alias NAME"
        )
    return min(same, key=lambda v: int(v.version))


def promote(
    params: Params,
    variant: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    force: bool = False,
    models_root: Path = Path("models"),
    metrics_root: Path = Path("metrics"),
) -> Promotion:
    """Point ``champion`` of ``<prefix>-<variant>`` at the chosen version: one evaluated like the
    workspace's evaluation, or any with ``force``."""
    from vaelab.tracking import tracking_uri
    from vaelab.tracking_http import connect, display_uri

    if version is not None and alias is not None:
        raise UserError("give --version or --alias, not both")
    name = f"{params.registry.prefix}-{variant}"
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"there is no MLflow registry at {uri}; run from the project root (where `dvc repro` "
            "made mlflow.db) or set MLFLOW_TRACKING_URI"
        )
    with connect(uri, params.registry) as client:
        if not client.search_registered_models(f"name='{name}'"):
            raise UserError(
                f"no registered model {name} in {display_uri(uri)}; run `dvc repro register` first"
            )
        target = _target(client, name, variant, version, alias, models_root)
        tagged = of_tags(target.tags or {}, f"{name} version {target.version}")
        why = (
            None
            if force
            else why_not_compared(
                current_fingerprint(params, variant, models_root, metrics_root),
                tagged,
                params.registry.metric,
            )
        )
        if why is not None:
            raise UserError(
                f"{name} version {target.version} is not comparable with the current evaluation "
                f"of {variant} ({why}): champion is the model for the current params' data, and "
                "the next `dvc repro` would move it back; to serve it, make its params the current "
                "ones (`dvc exp apply` and commit, then `dvc repro`), or pass --force"
            )
        aliases = client.get_registered_model(name).aliases or {}
        previous = int(aliases[CHAMPION]) if CHAMPION in aliases else None
        client.set_registered_model_alias(name, CHAMPION, target.version)
        if (target.tags or {}).get(PENDING_TAG):
            client.delete_model_version_tag(name, target.version, PENDING_TAG)
    promotion = Promotion(name, int(target.version), previous, tagged.id, checked=not force)
    was = "no champion" if previous is None else f"version {previous}"
    log.info(
        "%s: champion -> version %d (was %s), fingerprint %s",
        name,
        promotion.version,
        was,
        tagged.id or "none",
    )
    return promotion
