"""The remedies table's logic: which variant is which remedy, its plain-VAE baseline, and the
verdicts decided on intervals (known answers on hand-made estimates)."""

from __future__ import annotations

import pytest

from vaelab.compare.remedies import applied, compare_remedies, is_plain_vae, verdict_scores
from vaelab.config.model_config import parse_model_config
from vaelab.stats.intervals import Estimate

TRUNK = {"arch": "vae_conv", "filters": [16, 32, 64], "z_dim": 16, "kl_weight": 0.5}


def _dump(**knobs) -> dict:
    return parse_model_config({**TRUNK, **knobs}).model_dump(mode="json")


def _e(low: float, high: float) -> Estimate:
    return Estimate(mean=(low + high) / 2, sd=0.0, low=low, high=high, seeds=3, images=25)


ENTRIES = {
    "vae": _dump(),
    "vae_z4": _dump(z_dim=4),
    "vae_sigma": _dump(recon_loss="gaussian", sigma="learned"),
    "vae_resnet": _dump(trunk="resnet"),
    "vae_resnet_sigma": _dump(trunk="resnet", recon_loss="gaussian"),
    "vae_sigma_kl4": _dump(recon_loss="gaussian", kl_weight=4.0),
    "ae_twin": _dump(variational=False, kl_weight=1.0),
    "vae_gan_larsen": _dump(arch="vae_gan", recon_weight=0.0, adversarial_weight=2.0),
    "wae": parse_model_config(
        {**TRUNK, "variational": False, "kl_weight": 1.0, "mmd_weight": 100.0}
    ).model_dump(mode="json"),
}


def test_remedies_are_recognised_from_their_knobs_and_plain_vaes_have_none():
    assert [r.key for r in applied(ENTRIES["vae_sigma"])] == ["sigma_vae"]
    assert [r.key for r in applied(ENTRIES["vae_resnet_sigma"])] == ["sigma_vae", "resnet"]
    assert [r.key for r in applied(_dump(msssim_weight=0.3))] == ["msssim"]
    assert [r.key for r in applied(_dump(ffl_weight=10.0))] == ["ffl"]
    assert [r.key for r in applied(_dump(arch="vae_gan", recon_weight=0.0))] == ["vae_gan"]
    assert [r.key for r in applied(_dump(variational=False, kl_weight=1.0, mmd_weight=100.0))] == [
        "wae_mmd"
    ]
    assert [
        r.key
        for r in applied(
            _dump(variational=False, kl_weight=1.0, latent_norm_weight=1.0, decoder_reg="gp")
        )
    ] == ["rae"]
    assert is_plain_vae(ENTRIES["vae"]) and is_plain_vae(ENTRIES["vae_z4"])
    assert not is_plain_vae(ENTRIES["vae_sigma"]) and not is_plain_vae(ENTRIES["ae_twin"])


def test_each_remedy_is_measured_against_the_plain_vae_with_its_trunk_and_z():
    estimates = {name: {} for name in ENTRIES}
    by_variant = {c.variant: c for c in compare_remedies(ENTRIES, estimates)}
    assert set(by_variant) == {
        "vae_sigma",
        "vae_resnet",
        "vae_resnet_sigma",
        "vae_sigma_kl4",
        "vae_gan_larsen",
        "wae",
    }
    assert by_variant["vae_gan_larsen"].baseline == "vae"  # another arch, the vae_conv knobs shared
    # A WAE has no KL knobs to compare (TRUNK's kl_weight 0.5 is a VAE's): still the plain VAE
    # of its trunk and z.
    assert by_variant["wae"].baseline == "vae"
    assert by_variant["vae_sigma"].baseline == "vae"  # not vae_z4: another z
    assert by_variant["vae_resnet"].baseline == "vae"  # the trunk is the remedy itself
    assert by_variant["vae_resnet_sigma"].baseline == "vae"  # both remedies against the plain trunk
    # No plain VAE with kl_weight 4: said, not compared with an unlike model.
    assert (
        by_variant["vae_sigma_kl4"].baseline is None
        and "no plain VAE" in by_variant["vae_sigma_kl4"].reason
    )


def test_verdicts_are_decided_on_the_intervals_and_need_both_sharpness_measures():
    plain = {
        "blur.laplacian_var.recon": _e(1.0, 2.0),
        "blur.laplacian_var_norm.recon": _e(0.10, 0.20),
        "recon.mse": _e(0.020, 0.030),
        "blur.laplacian_var.sample": _e(1.0, 2.0),
        "blur.laplacian_var_norm.sample": _e(0.10, 0.20),
    }
    sigma = {
        "blur.laplacian_var.recon": _e(3.0, 4.0),
        "blur.laplacian_var_norm.recon": _e(0.30, 0.40),  # sharper
        "recon.mse": _e(0.025, 0.035),  # overlaps: inconclusive
        "blur.laplacian_var.sample": _e(3.0, 4.0),
        "blur.laplacian_var_norm.sample": _e(0.01, 0.05),
    }  # disagree
    resnet = {
        **plain,
        "recon.mse": _e(0.031, 0.040),
        "blur.laplacian_var.recon": _e(0.1, 0.5),
        "blur.laplacian_var_norm.recon": _e(0.01, 0.05),
    }
    entries = {
        "vae": ENTRIES["vae"],
        "vae_sigma": ENTRIES["vae_sigma"],
        "vae_resnet": ENTRIES["vae_resnet"],
    }
    result = {
        c.variant: c
        for c in compare_remedies(entries, {"vae": plain, "vae_sigma": sigma, "vae_resnet": resnet})
    }
    assert result["vae_sigma"].verdicts == {
        "recon_sharpness": "better",
        "sample_sharpness": "inconclusive",
        "mse": "inconclusive",
    }
    assert result["vae_resnet"].verdicts == {
        "recon_sharpness": "worse",
        "sample_sharpness": "inconclusive",
        "mse": "worse",
    }
    change = next(c for c in result["vae_sigma"].changes if c.key == "blur.laplacian_var.recon")
    assert change.delta == pytest.approx(2.0) and change.verdict == "better"
    assert verdict_scores(result.values()) == {
        "vae_sigma": {"recon_sharpness": 1, "sample_sharpness": 0, "mse": 0},
        "vae_resnet": {"recon_sharpness": -1, "sample_sharpness": 0, "mse": -1},
    }


def test_a_metric_one_side_lacks_is_left_out_not_guessed():
    plain = {"recon.mse": _e(0.02, 0.03)}
    sigma = {"recon.mse": _e(0.01, 0.015), "blur.laplacian_var.recon": _e(3.0, 4.0)}
    (comparison,) = compare_remedies(
        {"vae": ENTRIES["vae"], "vae_sigma": ENTRIES["vae_sigma"]},
        {"vae": plain, "vae_sigma": sigma},
    )
    assert [c.key for c in comparison.changes] == ["recon.mse"] and comparison.verdicts == {
        "mse": "better"
    }
