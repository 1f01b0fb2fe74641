"""Whether a training had converged: is its validation loss still falling at the end?

Over the last tenth of the epochs (at least 3), a least-squares line through the validation
loss: the training is **not converged** when that slope's 95 % interval lies wholly below zero
*and* the drop the line implies over the window is more than ``THRESHOLD`` (1 %) of the loss.
Both, because a long noiseless curve has a significant slope long after it stopped mattering,
and a short noisy one a large drop that is noise. The variant is judged on its mean validation
curve over the replicates (one replicate's curve on a small validation split wanders by a few
per cent from epoch to epoch); each replicate's own record is kept beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

THRESHOLD = 0.01  # the relative drop over the last tenth that still counts as converged
LEVEL = 0.95
MIN_EPOCHS = 3


def check(losses: Sequence[float]) -> dict[str, Any]:
    """One replicate's per-epoch validation losses → its convergence record: ``converged``,
    ``window`` (epochs), ``slope`` per epoch with ``slope_low`` / ``slope_high``, ``drop``
    (relative, over the window)."""
    values = np.asarray(losses, dtype=np.float64)
    window = max(MIN_EPOCHS, math.ceil(len(values) / 10))
    if len(values) < MIN_EPOCHS or not np.isfinite(values[-window:]).all():
        return {"converged": True, "window": len(values), "note": "too few epochs to tell"}
    tail = values[-window:]
    epochs = np.arange(window, dtype=np.float64)
    fit = stats.linregress(epochs, tail)
    spread = stats.t.ppf(0.5 + LEVEL / 2, window - 2) * fit.stderr
    low, high = fit.slope - spread, fit.slope + spread
    drop = -fit.slope * (window - 1) / max(abs(float(tail.mean())), 1e-12)
    return {
        "converged": not (high < 0 and drop > THRESHOLD),
        "window": window,
        "slope": float(fit.slope),
        "slope_low": float(low),
        "slope_high": float(high),
        "drop": float(drop),
    }


def summarise(mean_losses: Sequence[float], records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The variant's record: :func:`check` of its mean validation curve, with a note that gives
    the numbers when it is not converged, and each replicate's record (by seed) beside it."""
    overall = check(mean_losses)
    note = (
        ""
        if overall["converged"]
        else f"validation loss (mean over seeds) still falling {overall['drop']:.1%} over the last "
        f"{overall['window']} epochs (slope {overall['slope']:.3g} per epoch, 95 % interval "
        f"[{overall['slope_low']:.3g}, {overall['slope_high']:.3g}])"
    )
    return {
        **overall,
        "threshold": THRESHOLD,
        "note": note or overall.get("note", ""),
        "seeds": {str(seed): r for seed, r in records.items()},
    }
