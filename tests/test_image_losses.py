"""Structural and frequency reconstruction terms (issue 14): MS-SSIM and the focal frequency
loss against their packages and by hand, the MS-SSIM scales at our image sizes, the config
checks, the loss dicts with the terms on and off, and models that train, save and load with them."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from focal_frequency_loss import FocalFrequencyLoss
from pytorch_msssim import ms_ssim as package_ms_ssim
from pytorch_msssim import ssim as package_ssim

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from vaelab.config import params_from_dict
from vaelab.config.model_config import parse_model_config
from vaelab.errors import UserError
from vaelab.models import Autoencoder, build_model
from vaelab.models.image_losses import (
    MSSSIM_WEIGHTS,
    focal_frequency_term,
    ms_ssim,
    msssim_scales,
    msssim_term,
)
from vaelab.models.losses import (
    free_bits_kl,
    kl_divergence,
    kl_weight_at,
    reconstruction_error,
    reconstruction_loss,
)

TINY_VAE = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 4}
# params.yaml's vae (tests/test_resnet_trunk.py's copy) and the other default variants' entries.
TRUNK = {
    "arch": "vae_conv",
    "filters": [16, 32, 64],
    "z_dim": 16,
    "recon_loss": "bce",
    "epochs": 120,
}
VAE = {**TRUNK, "variational": True, "kl_weight": 0.5, "kl_warmup_epochs": 10}
DEFAULTS = {
    "ae_pool": {"arch": "ae_pool"},
    "ae_conv": {"arch": "ae_conv"},
    "accordion": {"arch": "accordion", "folds": 2},
    "ae_z16": {**TRUNK, "variational": False},
    "vae": VAE,
    "vae_study003": {
        **VAE,
        "filters": [32, 64, 128, 256],
        "z_dim": 256,
        "kl_weight": 5.0,
        "kl_warmup_epochs": 0,
    },
}
AE_KEYS = {"recon", "loss"}
VAE_KEYS = {"recon", "kl", "kl_weight", "kl_loss", "elbo", "loss"}


def make(raw: dict, image_size: int = 16, channels: int = 1) -> Autoencoder:
    torch.manual_seed(0)
    return build_model(parse_model_config(raw), image_size=image_size, channels=channels)


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def similar(x: torch.Tensor, noise: float = 0.1, seed: int = 1) -> torch.Tensor:
    """``x`` with a little noise, clipped to [0, 1]: structure in common, so MS-SSIM is well
    above 0."""
    return (x + noise * (images(*x.shape, seed=seed) - 0.5)).clamp(0.0, 1.0)


# --- MS-SSIM ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "window", "sides"),
    [
        (16, 7, (16, 8)),  # the tests' images
        (25, 11, (25, 13)),  # lfw's own size
        (32, 7, (32, 16, 8)),  # params.yaml's data.image_size
        (64, 7, (64, 32, 16, 8)),  # CelebA-like
        (128, 7, (128, 64, 32, 16, 8)),
        (161, 11, (161, 81, 41, 21, 11)),  # pytorch-msssim's own bound for 5 scales of 11 px
        (8, 7, (8,)),
        (4, 3, (4,)),
    ],
)
def test_the_scales_and_window_follow_the_image_size(side, window, sides):
    scales = msssim_scales(side)
    assert (scales.window, scales.sides) == (window, sides)
    # The first of Wang et al.'s weights, renormalised; all five as published (pytorch-msssim's).
    first = MSSSIM_WEIGHTS[: len(sides)]
    if len(sides) < 5:
        assert scales.weights == pytest.approx([w / sum(first) for w in first])
        assert sum(scales.weights) == pytest.approx(1.0)
    else:
        assert scales.weights == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    assert scales.window % 2 == 1 and scales.window <= sides[-1]


def test_the_package_refuses_our_sizes_and_agrees_from_its_bound():
    x = images(2, 1, 64, 64)
    with pytest.raises(AssertionError, match="4 downsamplings"):
        package_ms_ssim(x, x, data_range=1.0)
    # From 161 px the rule is the standard MS-SSIM: the package's, to float rounding.
    x = images(2, 3, 176, 176)
    y = similar(x)
    ours = msssim_term(y, x)
    theirs = (1 - package_ms_ssim(y, x, data_range=1.0, size_average=False)) * 3 * 176 * 176
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3)
    assert ours.min() > 0 and ours.max() < 3 * 176 * 176


@pytest.mark.parametrize("levels", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("window", [3, 7])
def test_ms_ssim_is_the_packages_for_any_number_of_scales(levels, window):
    # At 128 px the package takes windows up to 7 px; with the first k weights renormalised
    # our loop over scales is the package's.
    x = images(3, 2, 128, 128)
    y = similar(x, noise=0.3)
    first = MSSSIM_WEIGHTS[:levels]
    weights = tuple(w / sum(first) for w in first)
    ours = ms_ssim(y, x, window, weights)
    theirs = package_ms_ssim(
        y, x, data_range=1.0, size_average=False, win_size=window, weights=list(weights)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert ours.shape == (3,) and (ours > 0).all() and (ours < 1).all()


@pytest.mark.parametrize("side", [16, 25, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_msssim_term_at_our_sizes(side, channels):
    x = images(2, channels, side, side)
    with warnings.catch_warnings():
        # pytorch-msssim warns when a scale is smaller than the window and skips its smoothing.
        warnings.simplefilter("error")
        assert torch.equal(msssim_term(x, x), torch.zeros(2))
        y = similar(x).requires_grad_()
        term = msssim_term(y, x)
    pixels = channels * side * side
    assert term.shape == (2,) and (term > 0).all() and (term < pixels).all()
    # A noisier copy is further from the image.
    assert (msssim_term(similar(x, noise=0.5), x) > term).all()
    term.sum().backward()
    assert y.grad is not None and y.grad.isfinite().all() and y.grad.abs().sum() > 0


def test_the_msssim_term_is_one_minus_ms_ssim_times_the_values_of_an_image():
    x = images(2, 3, 32, 32)
    y = similar(x)
    scales = msssim_scales(32)
    expected = (1 - ms_ssim(y, x, scales.window, scales.weights)) * 3 * 32 * 32
    assert torch.equal(msssim_term(y, x), expected)
    # A single scale is the package's SSIM, clipped at 0: an 8-px image gets one scale of 7 px.
    small = images(2, 3, 8, 8)
    ssim = package_ssim(
        similar(small), small, data_range=1.0, size_average=False, win_size=7, nonnegative_ssim=True
    )
    torch.testing.assert_close(msssim_term(similar(small), small), (1 - ssim) * 3 * 64)


# --- focal frequency loss --------------------------------------------------------------------


def test_ffl_by_hand_on_a_4x4_image():
    # Reconstruction − target = 0.25 everywhere plus 0.25 at one pixel. Its orthonormal DFT:
    # 0.25 · 16 / 4 + 0.25 / 4 = 1.0625 at frequency 0, 0.0625 at the 15 others. Distances
    # 1.12890625 and 0.00390625; the focal weights |ΔF|^α over the largest: 1 and (1/17)^α.
    target = torch.zeros(1, 1, 4, 4)
    recon = torch.full((1, 1, 4, 4), 0.25)
    recon[0, 0, 1, 2] += 0.25
    for alpha in (0.0, 1.0, 2.0):
        expected = 1.12890625 + 15 * 0.00390625 * (1 / 17) ** alpha
        assert focal_frequency_term(recon, target, alpha).item() == pytest.approx(
            expected, rel=1e-6
        )
    # alpha 0 is the plain spectrum distance, by Parseval the summed squared error:
    # 15 · 0.0625 + 0.25.
    assert focal_frequency_term(recon, target, 0.0).item() == pytest.approx(1.1875, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_ffl_is_the_packages_summed_over_an_image(alpha):
    # The package averages over batch, channels and frequencies; ours sums over an image.
    target = images(2, 3, 4, 4)
    recon = images(2, 3, 4, 4, seed=1).requires_grad_()
    ours = focal_frequency_term(recon, target, alpha)
    theirs = FocalFrequencyLoss(alpha=alpha)(recon, target) * 3 * 4 * 4
    torch.testing.assert_close(ours.mean(), theirs, rtol=1e-6, atol=1e-7)
    # The same gradient too: both hold the focal weights fixed.
    (ours_grad,) = torch.autograd.grad(ours.mean(), recon)
    (theirs_grad,) = torch.autograd.grad(theirs, recon)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-7)
    # Per image: the first image alone gives its own value.
    torch.testing.assert_close(ours[0], FocalFrequencyLoss(alpha=alpha)(recon[:1], target[:1]) * 48)


def test_ffl_with_alpha_zero_is_the_summed_squared_error_and_zero_for_equal_images():
    target = images(3, 3, 16, 16)
    recon = images(3, 3, 16, 16, seed=1)
    mse = reconstruction_error(torch.logit(recon), recon, target, "mse")
    torch.testing.assert_close(focal_frequency_term(recon, target, 0.0), mse, rtol=1e-5, atol=1e-5)
    # Focal weights are at most 1: alpha > 0 only takes away.
    assert (focal_frequency_term(recon, target, 1.0) < mse).all()
    for alpha in (0.0, 1.0):
        assert torch.equal(focal_frequency_term(target, target, alpha), torch.zeros(3))


# --- float32 under autocast ------------------------------------------------------------------


def test_the_terms_are_float32_under_autocast():
    x = images(2, 3, 32, 32)
    y = similar(x)
    plain = msssim_term(y, x), focal_frequency_term(y, x, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = msssim_term(y, x), focal_frequency_term(y, x, 1.0)
        from_bf16 = (
            msssim_term(y.bfloat16(), x.bfloat16()),
            focal_frequency_term(y.bfloat16(), x.bfloat16(), 1.0),
        )
    for ours, reference in zip(autocast, plain, strict=True):
        assert ours.dtype == torch.float32 and torch.equal(ours, reference)
    for ours in from_bf16:
        assert ours.dtype == torch.float32


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({**TINY_VAE, "ffl_alpha": 2.0}, "models.v: ffl_alpha would do nothing with ffl_weight: 0"),
        (
            {"arch": "ae_pool", "ffl_weight": 0.0, "ffl_alpha": 0.0},
            "remove it or set ffl_weight above 0",
        ),
        ({**TINY_VAE, "msssim_weight": -1.0}, "models.v.msssim_weight: -1.0 is not allowed"),
        ({**TINY_VAE, "ffl_weight": -0.5}, "models.v.ffl_weight: -0.5 is not allowed"),
        (
            {**TINY_VAE, "ffl_weight": 1.0, "ffl_alpha": -1.0},
            "models.v.ffl_alpha: -1.0 is not allowed",
        ),
        ({**TINY_VAE, "msssim_weight": math.inf}, "models.v.msssim_weight"),
        ({**TINY_VAE, "msssim_weigth": 1.0}, "Did you mean 'models.v.msssim_weight'?"),
    ],
)
def test_a_wrong_term_setting_is_one_message_naming_the_key(entry, expected):
    with pytest.raises(UserError) as info:
        params_from_dict({"models": {"v": entry}})
    assert expected in str(info.value) and "problems" not in str(info.value)


@pytest.mark.parametrize(
    "arch", ["ae_pool", "ae_conv", "accordion", "vae_conv", "vae_mlp", "vae_small"]
)
def test_every_arch_takes_the_terms_and_carries_them_in_its_loss_settings(arch):
    raw = {"arch": arch, "msssim_weight": 2.0, "ffl_weight": 30.0, "ffl_alpha": 0.5}
    settings = make(raw, 28, 1).loss_settings
    assert (settings.msssim_weight, settings.ffl_weight, settings.ffl_alpha) == (2.0, 30.0, 0.5)
    config = parse_model_config(raw)
    assert parse_model_config(config.model_dump(mode="json")) == config
    off = make({"arch": arch}, 28, 1).loss_settings
    assert (off.msssim_weight, off.ffl_weight, off.ffl_alpha) == (0.0, 0.0, 1.0)


def test_the_params_entries_are_vae_plus_one_term():
    """vae_ffl (a default) and vae_msssim (a commented entry), as params.yaml writes them."""
    from tests.test_config import uncommented_params

    raw, _names = uncommented_params()
    wanted = {"vae_msssim": "msssim_weight", "vae_ffl": "ffl_weight"}
    models = params_from_dict(raw).models
    assert set(wanted) <= set(models)
    for name, knob in wanted.items():
        entry, vae = models[name].model_dump(), models["vae"].model_dump()
        assert entry[knob] > 0 and {k for k in entry if entry[k] != vae[k]} == {knob}


# --- the model's loss ------------------------------------------------------------------------


def old_loss(
    model: Autoencoder, x: torch.Tensor, outputs: dict, epoch: int
) -> dict[str, torch.Tensor]:
    """The loss dict as base.py made it before these terms: the formula, spelled out."""
    settings = model.loss_settings
    recon = reconstruction_loss(outputs["logits"], outputs["recon"], x, settings.recon_loss)
    if not model.is_variational:
        return {"recon": recon, "loss": settings.recon_weight * recon}
    kl = kl_divergence(outputs["mu"], outputs["logvar"])
    kl_loss = (
        free_bits_kl(outputs["mu"], outputs["logvar"], settings.free_bits)
        if settings.free_bits > 0
        else kl
    )
    weight = kl_weight_at(epoch, settings.kl_weight, settings.kl_warmup_epochs)
    return {
        "recon": recon,
        "kl": kl,
        "kl_weight": torch.tensor(weight),
        "kl_loss": kl_loss,
        "elbo": -(recon + kl),
        "loss": settings.recon_weight * recon + weight * kl_loss,
    }


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_the_default_variants_loss_dicts_are_unchanged(name):
    raw = DEFAULTS[name]
    x = images(3, 1, 32, 32)
    for entry in (raw, {**raw, "msssim_weight": 0.0, "ffl_weight": 0.0}):
        model = make(entry, 32, 1).eval()
        with torch.no_grad():
            outputs = model(x)
            terms = model.loss(x, outputs, epoch=3)
            expected = old_loss(model, x, outputs, 3)
        assert set(terms) == (VAE_KEYS if model.is_variational else AE_KEYS)
        assert {k: v.item() for k, v in terms.items()} == {k: v.item() for k, v in expected.items()}


def test_a_written_out_zero_trains_the_very_same_weights(tmp_path):
    default = fit(TINY_VAE, 16, 1, tmp_path / "default")
    zero = fit({**TINY_VAE, "msssim_weight": 0.0, "ffl_weight": 0.0}, 16, 1, tmp_path / "zero")
    torch.testing.assert_close(
        zero.loaded.state_dict(), default.loaded.state_dict(), rtol=0, atol=0
    )
    timing = {"images_per_second", "seconds"}
    assert [{k: v for k, v in row.items() if k not in timing} for row in zero.result.history] == [
        {k: v for k, v in row.items() if k not in timing} for row in default.result.history
    ]
    assert not any("msssim" in key or "ffl" in key for key in default.result.history[-1])


@pytest.mark.parametrize(
    "raw",
    [
        TINY_VAE,
        {**TINY_VAE, "variational": False},
        {"arch": "ae_pool"},
        {"arch": "vae_mlp", "hidden": [8], "recon_loss": "gaussian", "sigma": 0.2},
    ],
)
def test_the_terms_add_to_the_loss_and_leave_the_elbo_alone(raw):
    on = {**raw, "msssim_weight": 3.0, "ffl_weight": 20.0, "ffl_alpha": 2.0}
    model, without = make(on).eval(), make(raw).eval()
    # No parameters and no random numbers: the same initial weights as without the terms.
    torch.testing.assert_close(model.state_dict(), without.state_dict(), rtol=0, atol=0)
    x = images(3, 1, 16, 16)
    with torch.no_grad():
        outputs = model(x)
        terms, plain = model.loss(x, outputs, epoch=1), without.loss(x, outputs, epoch=1)
    assert set(terms) == set(plain) | {"msssim", "ffl"}
    assert terms["msssim"].item() == msssim_term(outputs["recon"], x).mean().item()
    assert terms["ffl"].item() == focal_frequency_term(outputs["recon"], x, 2.0).mean().item()
    assert terms["loss"].item() == pytest.approx(
        plain["loss"].item() + 3.0 * terms["msssim"].item() + 20.0 * terms["ffl"].item(), rel=1e-6
    )
    for name in set(plain) - {"loss"}:  # recon, kl, elbo, sigma, ...: unchanged by the terms
        assert torch.equal(terms[name], plain[name]), name
    if model.is_variational:
        assert torch.equal(terms["elbo"], -(terms["recon"] + terms["kl"]))


@pytest.mark.parametrize("term", ["msssim", "ffl"])
def test_each_term_alone_reaches_the_decoder(term):
    model = make({**TINY_VAE, f"{term}_weight": 1.0}).eval()
    outputs = model(images(4, 1, 16, 16))
    # Targets that share the reconstructions' structure, so MS-SSIM is above 0 in every image.
    target = similar(outputs["recon"].detach(), noise=0.2)
    terms = model.loss(target, outputs)
    assert set(terms) - VAE_KEYS == {term} and terms[term] > 0
    terms[term].backward()
    decoder = dict(model.decoder.named_parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.values()), [
        n for n, p in decoder.items() if p.grad is None or p.grad.abs().sum() == 0
    ]


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize(
    ("knobs", "name"),
    [({"msssim_weight": 1.0}, "msssim"), ({"ffl_weight": 10.0, "ffl_alpha": 2.0}, "ffl")],
)
def test_a_vae_with_a_term_trains_saves_and_loads_back(tmp_path, image_size, channels, knobs, name):
    fitted = fit({**TINY_VAE, **knobs}, image_size, channels, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
    row = fitted.result.history[-1]
    assert {f"train_{name}", f"val_{name}"} <= set(row) and row[f"val_{name}"] > 0
    assert fitted.loaded.loss_settings == fitted.model.loss_settings
