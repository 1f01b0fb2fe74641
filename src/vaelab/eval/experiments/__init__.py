"""The experiments of ``evaluate@<variant>``, each a function ``(Context) -> Result``.

An experiment reads the model, the test split and the shared quantities of its
:class:`~vaelab.eval.context.Context` and returns its metrics, notes and figures; it writes
no file. ``run_evaluate`` runs them in this order and merges what they return: a metric,
note or figure name that two experiments write is an error. Adding an experiment is
writing its function and adding it to EXPERIMENTS.
"""

from __future__ import annotations

from collections.abc import Callable

from vaelab.eval.context import Context
from vaelab.eval.experiments.arithmetic import arithmetic
from vaelab.eval.experiments.blur import blur
from vaelab.eval.experiments.interpolation import interpolation
from vaelab.eval.experiments.latent import elbo, latent_code, latent_histograms
from vaelab.eval.experiments.ood import ood
from vaelab.eval.experiments.radius import radius
from vaelab.eval.experiments.reconstruction import reconstruction
from vaelab.eval.experiments.samples import samples
from vaelab.eval.experiments.sharpening import sharpening
from vaelab.eval.experiments.spread import collapse, spread
from vaelab.eval.result import Result

Experiment = Callable[[Context], Result]

EXPERIMENTS: list[Experiment] = [
    reconstruction,
    blur,
    spread,
    collapse,
    elbo,
    latent_code,
    ood,
    samples,
    radius,
    interpolation,
    arithmetic,
    latent_histograms,
    sharpening,
]
