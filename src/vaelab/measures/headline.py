"""The one table of a variant's headline metrics: each number's key in the detail, its short
key in ``metrics/eval/<variant>.json``, its label, which way is better and how it is shown.

Evaluate writes the ``headline`` keys (the DVC metrics of a variant); compare's detail file,
compare's variant table and a registered version's description show the rows whose
``shown_in`` names them; the PR diff reads the reconstructions' sharpness by its two keys.

The DVC metrics are what ``dvc metrics show`` and ``dvc exp show`` print: one row per file
(data, each training, each evaluation, the chain, compare) and one column per key of any
file, so a variant's headline is a few short flat keys, and a record of another stage that
measures the same thing uses the same key (the chain's ``sharp`` and ``mse``): the table
stays within :data:`TABLE_WIDTH` characters on the default run. Everything else is in
``metrics/detail/``.
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


# The widest `dvc metrics show` of the default run, in characters (tests/test_dvc_views.py).
TABLE_WIDTH = 250

FID_RECORD = "inception"  # the detail's FID/KID record (vaelab.evaluate.fid writes it)

ALL, BOTH, TABLE_REG = "compare table registry", "compare table", "table registry"
METRICS: tuple[Metric, ...] = (
    Metric("recon.mse", "MSE", "lower", ".4g", "mse", ALL),
    Metric("recon.psnr", "PSNR dB", "higher", ".3g", None, ALL),
    Metric("recon.ssim", "SSIM", "higher", ".3f", None, ALL),
    Metric("blur.laplacian_var.recon", "Lap var recon", "higher", ".4g", "sharp", ALL),
    Metric("blur.laplacian_var_norm.recon", "norm. sharp. recon", "higher", ".3g", None, BOTH),
    Metric("spectrum.half_power.recon", "half-power", "higher", ".3g", None, ALL),
    Metric("blur.laplacian_var.sample", "Lap var sample", "higher", ".4g", "sample_sharp", ALL),
    Metric("blur.laplacian_var_norm.sample", "norm. sharp. sample", "higher", ".3g", None, BOTH),
    Metric("blur.laplacian_var.sample_gmm", "Lap var GMM", "higher", ".4g", None),
    Metric("latent.active_units", "active units", "higher", ".3g", "active", TABLE_REG),
    Metric("elbo", "ELBO", "higher", ".4g", "elbo", "registry"),
    Metric("collapse.collapsed", "collapsed", "lower", "d", None),
    Metric(f"{FID_RECORD}.fid.sample", "FID sample", "lower", ".4g", "fid"),
    Metric(f"{FID_RECORD}.fid.recon", "FID recon", "lower", ".4g", None),
    Metric(f"{FID_RECORD}.kid.sample", "KID sample", "lower", ".4g", None),
    Metric(f"{FID_RECORD}.kid.recon", "KID recon", "lower", ".4g", None),
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
SHARPNESS_HEADLINE = "sharp"
assert SHARPNESS.headline == SHARPNESS_HEADLINE


# The chain's DVC metrics (metrics/chain.json), keyed as the evaluation's: its last pass's
# sharpness and MSE to the inputs (the VAE's own sharpness is in its evaluation's).
CHAIN_SHARP, CHAIN_MSE = SHARPNESS_HEADLINE, "mse"
assert BY_DETAIL["recon.mse"].headline == CHAIN_MSE

# Compare's DVC metrics (metrics/compare.json): how many claims hold (or mostly hold) and how
# many go against the studies (do not hold, or mostly not); how many of the remedies' verdicts
# are better and worse than their plain VAE. Each claim's fractions and each verdict are in
# its detail and in reports/compare.md.
CLAIMS_HOLD, CLAIMS_AGAINST = "claims_hold", "claims_against"
REMEDIES_BETTER, REMEDIES_WORSE = "remedies_better", "remedies_worse"
