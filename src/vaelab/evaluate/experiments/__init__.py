"""The experiments of ``evaluate@<variant>``, each a function ``(Context) -> Result``.

An experiment reads the model, the test split and the shared quantities of its
:class:`~vaelab.evaluate.context.Context` and returns its metrics, notes and figures; it writes
no file. ``run_evaluate`` runs them in this order and merges what they return: a metric,
note or figure name that two experiments write is an error. Adding an experiment is
writing its function and adding it to EXPERIMENTS.
"""

from __future__ import annotations

from collections.abc import Callable

from vaelab.evaluate.context import Context
from vaelab.evaluate.experiments.arithmetic import arithmetic
from vaelab.evaluate.experiments.blur import blur
from vaelab.evaluate.experiments.interpolation import interpolation
from vaelab.evaluate.experiments.latent import elbo, latent_code, latent_histograms
from vaelab.evaluate.experiments.ood import ood
from vaelab.evaluate.experiments.power_spectra import spectrum
from vaelab.evaluate.experiments.radius import radius
from vaelab.evaluate.experiments.reconstruction import reconstruction
from vaelab.evaluate.experiments.samples import samples
from vaelab.evaluate.experiments.sharpening import sharpening
from vaelab.evaluate.experiments.spread import collapse, spread
from vaelab.evaluate.result import Result

Experiment = Callable[[Context], Result]

EXPERIMENTS: list[Experiment] = [
    reconstruction,
    blur,
    spectrum,
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
