"""What an evaluation measured on: the test split's md5 and the settings that can change a number.

``evaluate@<variant>`` writes :func:`evaluated_on` under ``evaluated_on`` in
``metrics/detail/eval/<variant>.json``; the registry builds each version's data and
evaluation fingerprint from it (:mod:`vaelab.registry.fingerprint`). :func:`settings_changing`
says which of the recorded settings a metric depends on, so that versions are compared on
``registry.metric`` only when those match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from vaelab.config import Params
from vaelab.io.hashing import md5_of_array

EVALUATED_ON = "evaluated_on"
# evaluate settings that change how the evaluation runs or what it draws, never a number
# (beyond floating-point noise): they are left out of the record. Every other setting is in it.
# sampler only adds the GMM's sample metrics (`*.sample_gmm`) beside the N(0, I) ones it never changes.
RUN_ONLY = frozenset({"batch_size", "device", "show", "histogram_dims", "chain", "sampler"})
# The recorded settings each group of metrics depends on, where that is fewer than all:
# recon.* reads the test split alone; the ELBO takes one draw per image, seeded with `seed`.
# A group not listed here depends on every recorded setting (the safe side).
DEPENDS_ON: dict[str, tuple[str, ...]] = {"recon": (), "elbo": ("seed",), "elbo_terms": ("seed",)}


def evaluated_on(params: Params, test: np.ndarray) -> dict[str, Any]:
    """``{"test_md5": ..., "settings": {"seed": ..., <every evaluate setting but RUN_ONLY>}}``."""
    settings = params.evaluate.model_dump(mode="json", exclude=set(RUN_ONLY))
    return {"test_md5": md5_of_array(test), "settings": {"seed": params.seed, **settings}}


def settings_changing(metric: str, recorded: Iterable[str]) -> list[str]:
    """The settings that can change ``metric`` (a dotted key such as ``recon.mse``): its
    group's in :data:`DEPENDS_ON`, else every one of ``recorded``."""
    depends = DEPENDS_ON.get(metric.split(".", 1)[0])
    return sorted(set(recorded) if depends is None else depends)
