"""The one table of a variant's headline metrics: each number's key in the detail, its short
key in ``metrics/eval/<variant>.json``, its label, which way is better and how it is shown.

Evaluate writes the ``headline`` keys (the DVC metrics of a variant); compare's detail file,
compare's variant table and a registered version's description show the rows whose
``shown_in`` names them; the PR diff reads the reconstructions' sharpness by its two keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower", "neither"]
PLACES = ("compare", "table", "registry")


@dataclass(frozen=True)
class Metric:
    """One headline metric of a variant (means over seeds)."""

    detail: str  # dotted key in metrics/detail/eval/<variant>.json
    label: str  # a column header, a few characters
    better: Better  # which way is an improvement
    fmt: str  # format spec of a table cell
    headline: str | None = None  # dotted key in metrics/eval/<variant>.json (the DVC metric)
    # Where else it is shown, as words: "compare" (a number per variant in compare's detail
    # file), "table" (a column of compare's variant table), "registry" (a registered version's
    # description).
    shown_in: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.shown_in.split()) - set(PLACES)
        if unknown:
            raise ValueError(f"{self.detail}: unknown places {sorted(unknown)}; known: {PLACES}")

    def shown(self, value: float) -> str:
        return format(value, self.fmt)


FID_RECORD = "inception"  # the detail's FID/KID record (vaelab.evaluate.fid writes it)

ALL, BOTH, TABLE_REG = "compare table registry", "compare table", "table registry"
METRICS: tuple[Metric, ...] = (
    Metric("recon.mse", "MSE", "lower", ".4g", "recon.mse", ALL),
    Metric("recon.psnr", "PSNR dB", "higher", ".3g", "recon.psnr", ALL),
    Metric("recon.ssim", "SSIM", "higher", ".3f", "recon.ssim", ALL),
    Metric("blur.laplacian_var.recon", "Lap var recon", "higher", ".4g", "sharpness.recon", ALL),
    Metric("blur.laplacian_var_norm.recon", "norm. sharp. recon", "higher", ".3g", None, BOTH),
    Metric("spectrum.half_power.recon", "half-power", "higher", ".3g", "half_power.recon", ALL),
    Metric("blur.laplacian_var.sample", "Lap var sample", "higher", ".4g", "sharpness.sample", ALL),
    Metric("blur.laplacian_var_norm.sample", "norm. sharp. sample", "higher", ".3g", None, BOTH),
    Metric("blur.laplacian_var.sample_gmm", "Lap var GMM", "higher", ".4g", "sharpness.sample_gmm"),
    Metric("latent.active_units", "active units", "higher", ".3g", "active_units", TABLE_REG),
    Metric("elbo", "ELBO", "higher", ".4g", "elbo", "registry"),
    Metric("collapse.collapsed", "collapsed", "lower", "d", "collapsed"),
    Metric(f"{FID_RECORD}.fid.sample", "FID sample", "lower", ".4g", "fid.sample"),
    Metric(f"{FID_RECORD}.fid.recon", "FID recon", "lower", ".4g", "fid.recon"),
    Metric(f"{FID_RECORD}.kid.sample", "KID sample", "lower", ".4g", "kid.sample"),
    Metric(f"{FID_RECORD}.kid.recon", "KID recon", "lower", ".4g", "kid.recon"),
)  # fmt: skip

BY_DETAIL = {metric.detail: metric for metric in METRICS}


def eval_headline() -> dict[str, str]:
    """Headline key → detail key, for :func:`vaelab.io.metric_files.headline_of`."""
    return {m.headline: m.detail for m in METRICS if m.headline is not None}


def compare_json() -> list[Metric]:
    """The numbers per variant in compare's detail file, in order."""
    return [m for m in METRICS if "compare" in m.shown_in.split()]


def compare_table() -> list[Metric]:
    """The columns of compare's variant table, in order."""
    return [m for m in METRICS if "table" in m.shown_in.split()]


def described() -> list[Metric]:
    """The numbers a registered version's description leads with, in order."""
    return [m for m in METRICS if "registry" in m.shown_in.split()]


# The reconstructions' sharpness, which the PR diff decides on: its detail and headline keys.
SHARPNESS = BY_DETAIL["blur.laplacian_var.recon"]
SHARPNESS_HEADLINE = "sharpness.recon"
assert SHARPNESS.headline == SHARPNESS_HEADLINE
