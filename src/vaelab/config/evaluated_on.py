"""What an evaluation measured on: the test split's md5 and the settings that can change a number.

``evaluate@<variant>`` writes :func:`evaluated_on` under ``evaluated_on`` in
``metrics/detail/eval/<variant>.json``; the registry builds each version's data and
evaluation fingerprint from it (:mod:`vaelab.registry.inputs`). :func:`settings_changing`
says which of the recorded settings a metric depends on, so that versions are compared on
``registry.metric`` only when those match.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from vaelab.config import Params
from vaelab.config.evaluate_config import EvaluateConfig
from vaelab.io.hashing import md5_of_array
from vaelab.kernels import in_force

EVALUATED_ON = "evaluated_on"
# evaluate settings that change how the evaluation runs or what it draws, never a number
# (beyond floating-point noise): they are left out of the record. Every other setting is in it.
# sampler only adds the GMM's sample metrics (`*.sample_gmm`) beside the N(0, I) ones it never
# changes.
RUN_ONLY = frozenset({"batch_size", "device", "show", "histogram_dims", "chain", "sampler"})
# Settings inside a section that change no number either: where the Inception weights lie
# (their checksum is checked, so any copy gives the same features).
RUN_ONLY_WITHIN = {"inception": {"weights"}}
# The recorded settings each group of metrics depends on, where that is fewer than all:
# recon.* reads the test split alone; the ELBO takes one draw per image, seeded with `seed`;
# FID and KID (inception.*) read the test split, the `samples` draws and their own settings.
# A group not listed here depends on every recorded setting (the safe side).
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "recon": (),
    "elbo": ("seed",),
    "elbo_terms": ("seed",),
    "inception": ("seed", "samples", "inception"),
}


def evaluated_on(params: Params, test: np.ndarray) -> dict[str, Any]:
    """``{"test_md5": ..., "settings": {"seed": ..., **recorded_settings(params.evaluate)}}``."""
    return {
        "test_md5": md5_of_array(test),
        "settings": {"seed": params.seed, **recorded_settings(params.evaluate)},
        # The CPU kernels in force (vaelab.kernels): a record, not part of the fingerprint.
        "kernels": in_force(),
    }


def recorded_settings(settings: EvaluateConfig) -> dict[str, Any]:
    """Every ``evaluate`` setting, JSON-ready, but RUN_ONLY and RUN_ONLY_WITHIN."""
    return settings.model_dump(
        mode="json", exclude={**dict.fromkeys(RUN_ONLY, True), **RUN_ONLY_WITHIN}
    )


def settings_changing(metric: str, recorded: Iterable[str]) -> list[str]:
    """The settings that can change ``metric`` (a dotted key such as ``recon.mse``): its
    group's in :data:`DEPENDS_ON`, else every one of ``recorded``."""
    depends = DEPENDS_ON.get(metric.split(".", 1)[0])
    return sorted(set(recorded) if depends is None else depends)
