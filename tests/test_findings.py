"""Known answers for the findings: intervals over seeds and images, claim outcomes, families."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.compare.families import find_families
from vaelab.compare.verdicts import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLDS,
    NOT_MEASURED,
    SCORE,
    every,
    higher,
    lower,
)
from vaelab.config.model_config import AeConvConfig, VaeConvConfig
from vaelab.stats.intervals import Estimate, estimate


def test_the_interval_of_a_constant_is_a_point():
    e = estimate(np.full((3, 20), 0.25))
    assert (e.mean, e.low, e.high, e.sd) == (0.25, 0.25, 0.25, 0.0)
    assert (e.seeds, e.images) == (3, 20)


def test_the_interval_covers_the_mean_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    few, many = estimate(rng.normal(1.0, 1.0, (3, 10))), estimate(rng.normal(1.0, 1.0, (3, 1000)))
    assert few.low < few.mean < few.high and many.low < many.mean < many.high
    assert many.high - many.low < (few.high - few.low) / 3
    assert many.low < 1.0 < many.high


def test_seed_spread_widens_the_interval():
    # Every image agrees within a seed, but the seeds disagree: only the seed level varies.
    values = np.array([[0.0] * 50, [1.0] * 50, [2.0] * 50])
    e = estimate(values)
    assert e.mean == 1.0 and e.sd == pytest.approx(1.0)
    assert e.low <= 0.34 and e.high >= 1.66  # resampling 3 seeds reaches far from the mean
    assert estimate(values[:, :1]).high - estimate(values[:, :1]).low == pytest.approx(
        e.high - e.low, abs=0.2
    )


def test_one_seed_is_allowed_and_reruns_are_equal():
    rng = np.random.default_rng(1)
    values = rng.normal(size=40)
    assert estimate(values) == estimate(values[None, :])
    assert estimate(values).sd == 0.0 and estimate(values).seeds == 1


@pytest.mark.parametrize("bad", [np.zeros((0,)), np.array([[np.nan, 1.0]])])
def test_unusable_values_are_refused(bad):
    with pytest.raises(ValueError):
        estimate(bad)


def _e(low: float, high: float) -> Estimate:
    return Estimate(mean=(low + high) / 2, sd=0.0, low=low, high=high, seeds=3, images=30)


def test_claim_outcomes_on_intervals():
    assert lower(_e(0, 1), _e(2, 3)) == HOLDS
    assert lower(_e(2, 3), _e(0, 1)) == NOT_HOLDS
    assert lower(_e(0, 2), _e(1, 3)) == INCONCLUSIVE  # overlapping intervals
    assert higher(_e(2, 3), _e(0, 1)) == HOLDS
    assert every([HOLDS, HOLDS]) == HOLDS
    assert every([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert every([HOLDS, INCONCLUSIVE, NOT_HOLDS]) == NOT_HOLDS
    assert every([]) == NOT_MEASURED and NOT_MEASURED not in SCORE


def test_families_differ_in_exactly_one_knob():
    models = {
        "vae": VaeConvConfig(z_dim=256, kl_weight=1.0),
        "vae_z16": VaeConvConfig(z_dim=16, kl_weight=1.0),
        "vae_z64": VaeConvConfig(z_dim=64, kl_weight=1.0),
        "vae_beta5": VaeConvConfig(z_dim=256, kl_weight=5.0),
        "two_knobs": VaeConvConfig(
            z_dim=16, kl_weight=5.0, filters=(8, 16)
        ),  # differs from all in 2+ knobs
        "ae": AeConvConfig(),  # another architecture: no family with the VAEs
    }
    families = {(f.knob, f.variants): f.values for f in find_families(models)}
    assert families == {
        ("z_dim", ("vae_z16", "vae_z64", "vae")): (16, 64, 256),  # ordered by the knob's value
        ("kl_weight", ("vae", "vae_beta5")): (1.0, 5.0),
    }


def test_two_architectures_are_no_family():
    from vaelab.config.model_config import AePoolConfig

    assert find_families({"a": AeConvConfig(), "b": AePoolConfig()}) == []  # same knobs, other arch


def test_variants_that_differ_in_no_knob_form_no_family():
    twins = {
        "a": VaeConvConfig(z_dim=8),
        "b": VaeConvConfig(z_dim=8, kernel=3),
    }  # kernel 3 is the default
    assert find_families(twins) == []
