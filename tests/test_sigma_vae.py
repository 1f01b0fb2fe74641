"""The calibrated Gaussian decoder (σ-VAE, Rybkin et al. 2021): its loss by hand, the three
ways to set σ, the config checks, and models that train, save and load back with it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from vaelab.config import params_from_dict
from vaelab.config.model_config import parse_model_config
from vaelab.errors import UserError
from vaelab.evaluate.latent_measures import elbo_terms
from vaelab.models import build_model, count_params
from vaelab.models.losses import (
    LOG_SIGMA_FLOOR,
    decoder_log_sigma,
    gaussian_nll,
    optimal_log_sigma,
    reconstruction_error,
    reconstruction_loss,
    softclip,
)

# Two 1×1×2 images, their reconstructions and the logits behind them (sigmoid(logits) = RECON).
TARGET = torch.tensor([[[[0.25, 1.0]]], [[[0.0, 0.5]]]])
RECON = torch.tensor([[[[0.5, 0.5]]], [[[0.0, 1.0]]]])
LOGITS = torch.logit(RECON, eps=1e-6)
# x − x̂ = (−0.25, 0.5) and (0, −0.5): squares 0.0625, 0.25, 0, 0.25, mean 0.140625, RMS 0.375.
RMS = 0.375

TINY_VAE = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 4, "recon_loss": "gaussian"}


def test_gaussian_nll_is_summed_per_image_and_averaged_over_the_batch():
    log_sigma = torch.tensor(math.log(0.5))
    # Per pixel 0.5 ((x − x̂) / σ)² + log σ + 0.5 log 2π; with σ = 0.5 the squares are
    # 0.25, 1, 0, 1: image sums 0.625 and 0.5 plus two pixels' constants, mean 0.5625 + ...
    expected = 0.5625 + 2 * math.log(0.5) + math.log(2 * math.pi)
    assert reconstruction_loss(
        LOGITS, RECON, TARGET, "gaussian", log_sigma
    ).item() == pytest.approx(expected)
    # The same as torch's Normal, summed over pixels and negated.
    by_torch = -Normal(RECON, 0.5).log_prob(TARGET).flatten(1).sum(dim=1)
    torch.testing.assert_close(
        reconstruction_error(LOGITS, RECON, TARGET, "gaussian", log_sigma), by_torch
    )
    torch.testing.assert_close(
        gaussian_nll(RECON, TARGET, log_sigma), -Normal(RECON, 0.5).log_prob(TARGET)
    )


def test_with_sigma_one_the_gaussian_is_half_the_summed_squared_error_plus_a_constant():
    mse = reconstruction_loss(LOGITS, RECON, TARGET, "mse")
    gaussian = reconstruction_loss(LOGITS, RECON, TARGET, "gaussian", torch.tensor(0.0))
    assert gaussian.item() == pytest.approx(0.5 * mse.item() + 0.5 * math.log(2 * math.pi) * 2)


def test_the_gaussian_loss_needs_its_sigma():
    with pytest.raises(ValueError, match="needs the decoder's log σ"):
        reconstruction_loss(LOGITS, RECON, TARGET, "gaussian")


def test_soft_clip_bounds_log_sigma_below_and_leaves_large_values():
    values = torch.tensor([-math.inf, -100.0, -6.0, math.log(RMS), 0.0, 30.0])
    clipped = softclip(values, LOG_SIGMA_FLOOR)
    # low + softplus(x − low) = log(e^low + e^x): σ itself gains e^−6 ≈ 0.0025, never less.
    expected = torch.log(math.exp(-6.0) + values.exp())
    torch.testing.assert_close(clipped, expected)
    assert clipped[0].item() == -6.0 and (clipped >= -6.0).all() and (clipped > -6.0)[2:].all()
    assert clipped[2].item() == pytest.approx(-6.0 + math.log(2.0))
    assert clipped[-1].item() == 30.0


def test_optimal_sigma_is_the_batch_rms_error_soft_clipped():
    recon = RECON.clone().requires_grad_()
    log_sigma = optimal_log_sigma(recon, TARGET)
    assert log_sigma.ndim == 0 and not log_sigma.requires_grad  # from the detached error
    assert log_sigma.exp().item() == pytest.approx(RMS + math.exp(-6.0))
    assert decoder_log_sigma("optimal", recon, TARGET).item() == log_sigma.item()
    # A batch reproduced exactly sits on the floor instead of log 0.
    assert optimal_log_sigma(TARGET, TARGET).item() == -6.0


def test_the_rms_error_is_where_the_likelihood_peaks():
    # d/d log σ of the summed NLL is N − Σ (x − x̂)² / σ², zero at σ = RMS.
    log_sigma = torch.tensor(math.log(RMS), requires_grad=True)
    reconstruction_loss(LOGITS, RECON, TARGET, "gaussian", log_sigma).backward()
    assert log_sigma.grad.item() == pytest.approx(0.0, abs=1e-6)


def test_a_fixed_sigma_is_used_as_given_and_learned_one_soft_clipped():
    assert decoder_log_sigma(0.1, RECON, TARGET).item() == pytest.approx(math.log(0.1))
    learned = torch.tensor(-9.0)
    assert decoder_log_sigma("learned", RECON, TARGET, learned).exp().item() == pytest.approx(
        math.exp(-9.0) + math.exp(-6.0)
    )
    with pytest.raises(ValueError, match="log σ parameter"):
        decoder_log_sigma("learned", RECON, TARGET)


def test_learned_sigma_is_one_parameter_starting_at_one():
    learned = build_model(
        parse_model_config({**TINY_VAE, "sigma": "learned"}), image_size=16, channels=1
    )
    optimal = build_model(
        parse_model_config({**TINY_VAE, "sigma": "optimal"}), image_size=16, channels=1
    )
    assert count_params(learned).trainable == count_params(optimal).trainable + 1
    assert set(learned.state_dict()) - set(optimal.state_dict()) == {"log_sigma"}
    assert learned.log_sigma.shape == () and learned.log_sigma.item() == 0.0
    assert "log_sigma" in dict(learned.named_parameters())  # so the optimiser steps it
    x = torch.rand(3, 1, 16, 16)
    outputs = learned.eval()(x)
    terms = learned.loss(x, outputs)
    expected = -Normal(outputs["recon"], 1 + math.exp(-6.0)).log_prob(x).flatten(1).sum(1).mean()
    assert terms["recon"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["sigma"].item() == pytest.approx(1 + math.exp(-6.0))
    assert terms["elbo"].item() == pytest.approx(-(terms["recon"] + terms["kl"]).item())
    terms["loss"].backward()
    assert learned.log_sigma.grad is not None and learned.log_sigma.grad.item() != 0.0


@pytest.mark.parametrize(("sigma", "expected"), [("optimal", None), (0.1, 0.1)])
def test_model_loss_with_optimal_and_fixed_sigma(sigma, expected):
    model = build_model(
        parse_model_config({**TINY_VAE, "sigma": sigma}), image_size=16, channels=1
    ).eval()
    x = torch.rand(3, 1, 16, 16)
    outputs = model(x)
    if expected is None:
        expected = (x - outputs["recon"]).square().mean().sqrt().item() + math.exp(-6.0)
    terms = model.loss(x, outputs)
    by_torch = -Normal(outputs["recon"], expected).log_prob(x).flatten(1).sum(1).mean()
    assert terms["sigma"].item() == pytest.approx(expected, rel=1e-6)
    assert terms["recon"].item() == pytest.approx(by_torch.item(), rel=1e-5)
    assert not hasattr(model, "log_sigma") and count_params(model) == count_params(
        build_model(
            parse_model_config({k: v for k, v in TINY_VAE.items() if k != "recon_loss"}),
            image_size=16,
            channels=1,
        )
    )


def test_the_evaluated_elbo_uses_the_gaussian_decoder():
    model = build_model(
        parse_model_config({**TINY_VAE, "sigma": 0.2}), image_size=16, channels=1
    ).eval()
    x = torch.rand(2, 1, 16, 16)
    terms = elbo_terms(model, x, torch.Generator().manual_seed(0))
    # The same draw of z, by hand.
    codes = model.encode(x)
    eps = torch.randn(codes["mu"].shape, generator=torch.Generator().manual_seed(0))
    recon = model.decode(codes["mu"] + torch.exp(0.5 * codes["logvar"]) * eps)
    by_torch = -Normal(recon, 0.2).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(terms["recon"], by_torch)
    torch.testing.assert_close(terms["elbo"], -(by_torch + terms["kl"]))


def test_an_accordion_learns_one_sigma_not_one_per_fold():
    model = build_model(
        parse_model_config({"arch": "accordion", "recon_loss": "gaussian"}),
        image_size=8,
        channels=1,
    )
    assert [name for name in model.state_dict() if "sigma" in name] == ["log_sigma"]
    x = torch.rand(2, 1, 8, 8)
    model.loss(x, model(x))["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**TINY_VAE, "sigma": "fancy"},
            "models.v.sigma: must be 'learned', 'optimal' or a fixed σ > 0",
        ),
        ({**TINY_VAE, "sigma": -0.5}, "models.v.sigma: must be"),
        ({**TINY_VAE, "sigma": 0}, "models.v.sigma: must be"),
        ({**TINY_VAE, "sigma": True}, "models.v.sigma: must be"),
        (
            {"arch": "vae_conv", "sigma": "optimal"},
            "models.v: sigma would do nothing with recon_loss: bce",
        ),
        (
            {"arch": "vae_small", "sigma": 0.5},
            "models.v: sigma would do nothing with recon_loss: mse",
        ),
        ({"arch": "vae_mlp", "recon_loss": "l1"}, "'bce', 'mse' or 'gaussian'"),
    ],
)
def test_a_wrong_sigma_is_one_message_naming_the_key(entry, expected):
    with pytest.raises(UserError) as info:
        params_from_dict({"models": {"v": entry}})
    assert expected in str(info.value) and "problems" not in str(info.value)


def test_sigma_settings_validate_and_round_trip_through_json():
    assert parse_model_config({**TINY_VAE, "sigma": 1}).sigma == 1.0
    for sigma in ("learned", "optimal", 0.05):
        config = parse_model_config({**TINY_VAE, "sigma": sigma})
        assert parse_model_config(config.model_dump(mode="json")) == config
    # bce and mse entries keep the default, which does nothing for them.
    assert parse_model_config({"arch": "ae_pool"}).sigma == "learned"


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize("sigma", ["learned", "optimal", 0.1])
def test_a_gaussian_vae_trains_saves_and_loads_back(tmp_path, image_size, channels, sigma):
    fitted = fit({**TINY_VAE, "sigma": sigma}, image_size, channels, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
    assert {"train_sigma", "val_sigma"} <= set(fitted.result.history[-1])
    if sigma == "learned":
        assert fitted.loaded.log_sigma.item() == fitted.model.log_sigma.item() != 0.0
    elif sigma == 0.1:
        assert fitted.result.history[-1]["val_sigma"] == pytest.approx(0.1)


@pytest.mark.parametrize("raw", [{"arch": "ae_pool"}, {**TINY_VAE, "variational": False}])
def test_gaussian_autoencoders_train_saves_and_load_back(tmp_path, raw):
    fitted = fit({**raw, "recon_loss": "gaussian", "sigma": "learned"}, 16, 1, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)


def _sigma_after(tmp_path, steps: int, **knobs) -> tuple[float, float]:
    """(σ, the RMS reconstruction error) of a tiny σ-VAE after ``steps`` steps."""
    fitted = fit({**TINY_VAE, **knobs}, 8, 1, tmp_path, steps=steps)
    model = fitted.model.eval()
    with torch.no_grad():
        rms = (model(fitted.images)["recon"] - fitted.images).square().mean().sqrt()
    return float(model.log_sigma.exp()), float(rms)


def test_the_learned_sigma_reaches_the_rms_error_with_its_own_learning_rate(tmp_path):
    # At train.lr (0.001) log σ moves about 0.001 a step: after 60 steps σ ≈ 0.94, far above
    # the RMS error; at sigma_lr 0.02 it gets there (the σ-VAE's optimum), within a third.
    slow_sigma, slow_rms = _sigma_after(tmp_path / "slow", 60, sigma_lr=None)
    sigma, rms = _sigma_after(tmp_path / "own", 60)
    assert slow_sigma > 0.9 and slow_sigma > 2 * slow_rms
    assert abs(math.log(sigma / rms)) < math.log(1.35)


def test_sigma_lr_needs_a_learned_sigma():
    with pytest.raises(UserError, match="sigma_lr would do nothing"):
        params_from_dict({"models": {"v": {**TINY_VAE, "sigma": "optimal", "sigma_lr": 0.1}}})
    with pytest.raises(UserError, match="sigma_lr would do nothing"):
        params_from_dict({"models": {"v": {"arch": "vae_conv", "sigma_lr": 0.1}}})
