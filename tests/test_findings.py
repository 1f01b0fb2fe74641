"""Known answers for the findings: intervals over seeds and images, claim outcomes, families."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.measured import faces, measured
from vaelab.compare.claims import Evaluated, recon_blurrier_than_inputs, smaller_latent_blurrier
from vaelab.compare.comparisons import Status
from vaelab.compare.families import find_families
from vaelab.compare.verdicts import COLLAPSED, HOLDS, INCONCLUSIVE, MIXED, NOT_HOLDS, NOT_MEASURED
from vaelab.config.model_config import AeConvConfig, VaeConvConfig
from vaelab.stats.intervals import estimate


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


def _variant(name: str, z: int = 16) -> Evaluated:
    return Evaluated(name, VaeConvConfig(z_dim=z), True, z, {})


def _recon(variant: str, lap: float, half: float) -> dict:
    """A variant whose reconstructions are ``lap`` / ``half`` off its inputs on every image."""
    inputs = faces()
    return {
        (variant, "input", "laplacian_var"): inputs,
        (variant, "input", "half_power"): np.ones_like(inputs),
        (variant, "recon", "laplacian_var"): inputs + lap,
        (variant, "recon", "half_power"): np.ones_like(inputs) + half,
    }


def test_a_claim_counts_its_comparisons_and_names_the_variants():
    values = {
        **_recon("sharp_loss", -0.5, -0.3),  # blurrier on both measures: holds
        **_recon("vae", -0.5, -0.3),
        **_recon("odd", -0.5, +0.3),  # the measures disagree: inconclusive
        **_recon("copy", 0.0, 0.0),  # no difference: inconclusive
    }
    variants = [_variant(n) for n in ("sharp_loss", "vae", "odd", "copy")]
    claim = recon_blurrier_than_inputs(variants, measured(values), 0)
    assert (claim.count(HOLDS), claim.count(INCONCLUSIVE), claim.counted) == (2, 2, 4)
    assert claim.outcome == INCONCLUSIVE
    assert (
        claim.counts() == "holds for 2 of 4 (sharp_loss, vae); inconclusive for 2 of 4 (odd, copy)"
    )
    assert claim.fractions() == {"hold": 0.5, "against": 0.0}
    assert "do not agree" in claim.comparisons[2].note
    # Four comparisons: each decided at 1 − 0.05 / 4.
    assert claim.comparisons[0].results["laplacian_var"].level == 1 - 0.05 / 4


def test_a_collapsed_variant_is_marked_and_does_not_count():
    values = {**_recon("vae", -0.5, -0.3), **_recon("collapsed_vae", 0.5, 0.3)}
    status = {"collapsed_vae": Status(collapsed_seeds=2, seeds=3)}
    variants = [_variant("vae"), _variant("collapsed_vae")]
    claim = recon_blurrier_than_inputs(variants, measured(values, status), 0)
    assert claim.outcome == HOLDS and claim.counted == 1
    assert claim.comparisons[1].outcome == COLLAPSED
    assert "2 of 3 replicate(s) collapsed" in claim.comparisons[1].note
    assert "collapsed: 1 (collapsed_vae)" in claim.counts()


def test_a_claim_against_every_comparison_does_not_hold_and_some_each_way_is_mixed():
    sharper = {**_recon("a", 0.5, 0.3), **_recon("b", 0.5, 0.3)}
    claim = recon_blurrier_than_inputs([_variant("a"), _variant("b")], measured(sharper), 0)
    assert claim.outcome == NOT_HOLDS and claim.fractions() == {"hold": 0.0, "against": 1.0}
    both = {**_recon("a", 0.5, 0.3), **_recon("b", -0.5, -0.3)}
    assert (
        recon_blurrier_than_inputs([_variant("a"), _variant("b")], measured(both), 0).outcome
        == MIXED
    )


def test_families_are_compared_in_knob_order_and_untestable_claims_say_why():
    base = faces()
    values = {
        ("vae_z4", "recon", "laplacian_var"): base,
        ("vae_z4", "recon", "half_power"): base / 4,
        ("vae", "recon", "laplacian_var"): base + 0.5,
        ("vae", "recon", "half_power"): base / 4 + 0.1,
    }
    claim = smaller_latent_blurrier(
        [_variant("vae_z4", 4), _variant("vae", 16)], measured(values), 0
    )
    assert (
        claim.outcome == HOLDS
        and claim.comparisons[0].label == "vae_z4 (z_dim 4) vs vae (z_dim 16)"
    )
    alone = smaller_latent_blurrier([_variant("vae", 16)], measured(values), 0)
    assert alone.outcome == NOT_MEASURED and "z_dim alone" in alone.reason


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


def test_a_vae_is_compared_with_its_twin_ae_only():
    from vaelab.compare.claims import vae_blurrier_than_its_ae
    from vaelab.config.model_config import parse_model_config

    trunk = {"arch": "vae_conv", "filters": [8], "z_dim": 16}

    def evaluated(name: str, config: dict) -> Evaluated:
        parsed = parse_model_config(config)
        return Evaluated(name, parsed, bool(getattr(parsed, "variational", False)), 16, {})

    ae, vae = evaluated("ae_z16", {**trunk, "variational": False}), evaluated("vae", trunk)
    base = faces()
    values = {
        ("vae", "recon", "laplacian_var"): base,
        ("vae", "recon", "half_power"): base / 4,
        ("ae_z16", "recon", "laplacian_var"): base + 0.5,
        ("ae_z16", "recon", "half_power"): base / 4 + 0.1,
    }
    claim = vae_blurrier_than_its_ae([ae, vae], measured(values), 0)
    assert claim.outcome == HOLDS and claim.comparisons[0].label == "vae vs ae_z16 (z 16)"
    # An AE of another trunk (or arch) is no twin: not measured, with the reason.
    other = evaluated("ae_pool", {"arch": "ae_pool"})
    wider = evaluated("ae_z32", {**trunk, "z_dim": 32, "variational": False})
    claim = vae_blurrier_than_its_ae([other, wider, vae], measured(values), 0)
    assert claim.outcome == NOT_MEASURED and "variational: false" in claim.reason
