"""The remedies table's logic: which variant is which remedy, its plain-VAE baseline, and the
verdicts decided on paired comparisons (known answers on hand-made per-image values)."""

from __future__ import annotations

from tests.support.measured import faces, measured
from vaelab.compare.remedies import applied, compare_remedies, is_plain_vae, verdict_scores
from vaelab.config.model_config import parse_model_config

TRUNK = {"arch": "vae_conv", "filters": [16, 32, 64], "z_dim": 16, "kl_weight": 0.5}


def _dump(**knobs) -> dict:
    return parse_model_config({**TRUNK, **knobs}).model_dump(mode="json")


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
    by_variant = {c.variant: c for c in compare_remedies(ENTRIES, measured({}))}
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
    # Nothing measured: no verdict is guessed.
    assert all(c.verdicts == {} for c in by_variant.values())


def _sides(variant: str, *, recon: float, half: float, mse: float, sample: float, ref: float):
    """One variant's per-image values, offsets added to the same images."""
    base, noise = faces(), faces(seed=5, low=0.0) * 0.002
    return {
        (variant, "recon", "laplacian_var"): base + recon,
        (variant, "recon", "half_power"): base / 4 + half,
        (variant, "recon", "mse"): base / 100 + mse + noise,
        (variant, "sample", "laplacian_var"): faces(seed=9) + sample,
        (variant, "sample", "half_power_ref"): faces(seed=11) / 4 + ref,
    }


def test_verdicts_are_paired_and_need_both_sharpness_measures():
    values = {
        **_sides("vae", recon=0.0, half=0.0, mse=0.0, sample=0.0, ref=0.0),
        # Sharper on both measures; MSE within the noise; samples: the two measures disagree.
        **_sides("vae_sigma", recon=0.05, half=0.02, mse=0.0, sample=3.0, ref=-3.0),
        # Blurrier on both, and a worse MSE.
        **_sides("vae_resnet", recon=-0.05, half=-0.02, mse=0.01, sample=0.0, ref=0.0),
    }
    entries = {name: ENTRIES[name] for name in ("vae", "vae_sigma", "vae_resnet")}
    result = {c.variant: c for c in compare_remedies(entries, measured(values))}
    assert result["vae_sigma"].verdicts == {
        "recon_sharpness": "better",
        "mse": "inconclusive",
        "sample_sharpness": "inconclusive",
    }
    assert "do not agree" in result["vae_sigma"].comparisons["sample_sharpness"].note
    assert result["vae_resnet"].verdicts == {
        "recon_sharpness": "worse",
        "mse": "worse",
        "sample_sharpness": "inconclusive",
    }
    recon = result["vae_sigma"].comparisons["recon_sharpness"].results["laplacian_var"]
    assert recon.difference > 0 and recon.low > 0 and recon.images == 30
    # The family is the whole table: 6 verdicts, each at 1 − 0.05 / 6.
    assert recon.level == 1 - 0.05 / 6
    assert verdict_scores(result.values()) == {
        "vae_sigma": {"recon_sharpness": 1, "mse": 0, "sample_sharpness": 0},
        "vae_resnet": {"recon_sharpness": -1, "mse": -1, "sample_sharpness": 0},
    }


def test_a_measure_one_side_lacks_is_left_out_not_guessed():
    values = {
        ("vae", "recon", "mse"): faces(),
        ("vae_sigma", "recon", "mse"): faces() - 0.5,
        ("vae_sigma", "recon", "laplacian_var"): faces(),
    }
    (comparison,) = compare_remedies(
        {"vae": ENTRIES["vae"], "vae_sigma": ENTRIES["vae_sigma"]}, measured(values)
    )
    assert comparison.verdicts == {"mse": "better"}
