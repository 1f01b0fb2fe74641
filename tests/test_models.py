"""The model zoo: the studies' parameter counts, shapes at any image size, losses by hand,
configs."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from vaelab.config.model_config import AeConvConfig, ModelConfig, VaeConvConfig, parse_model_config
from vaelab.config.section import Section
from vaelab.models import ARCHITECTURES, Autoencoder, build_model, count_params, summarize
from vaelab.models.layers import SameConv2d, same_size
from vaelab.models.losses import (
    free_bits_kl,
    kl_divergence,
    kl_weight_at,
    reconstruction_loss,
)
from vaelab.models.vae import VAE_CONV_PRESETS

# Small variants keep the file fast; the defaults are exercised by the count tests.
SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "ae_pool": {"arch": "ae_pool"},
    "ae_conv": {"arch": "ae_conv"},
    "accordion": {"arch": "accordion", "folds": 2},
    "vae_conv": {"arch": "vae_conv", "filters": [8, 16, 16], "z_dim": 6, "batch_norm": "all"},
    "vae_conv_resize": {
        "arch": "vae_conv",
        "filters": [8, 16],
        "z_dim": 4,
        "decoder_upsample": "resize",
    },
    # Issue 14's remedies: a residual trunk and a calibrated Gaussian decoder with a learned σ.
    "vae_conv_remedies": {
        "arch": "vae_conv",
        "filters": [8, 16],
        "z_dim": 4,
        "trunk": "resnet",
        "recon_loss": "gaussian",
        "sigma": "learned",
    },
    "vae_mlp": {"arch": "vae_mlp", "hidden": [32, 16], "z_dim": 2},
    "vae_small": {"arch": "vae_small", "z_dim": 8, "filters": [4, 4, 4]},
}


def make(raw: dict[str, Any], image_size: int, channels: int) -> Autoencoder:
    torch.manual_seed(0)
    return build_model(parse_model_config(raw), image_size=image_size, channels=channels)


def summary_counts(text: str, label: str = "Total params") -> list[int]:
    """Every ``label: N`` in a summary, in order, as ints."""
    return [
        int(line.split(":")[1].replace(",", ""))
        for line in text.splitlines()
        if line.startswith(label + ":")
    ]


# --- the studies' parameter counts -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "trainable", "non_trainable"),
    [
        ({"arch": "ae_pool"}, 49_731, 0),  # study 000 Version 1
        ({"arch": "ae_conv"}, 817_411, 512),  # study 000 Version 2: Keras total 817,923
        ({"arch": "accordion", "folds": 2}, 1_634_822, 1_024),  # study 001 Accordion V1
    ],
)
def test_autoencoders_reproduce_the_seed_counts_at_128x128x3(raw, trainable, non_trainable):
    model = make(raw, 128, 3)
    counts = count_params(model)
    assert (counts.trainable, counts.non_trainable) == (trainable, non_trainable)
    text = summarize(model, 128, 3)
    assert summary_counts(text) == [trainable + non_trainable]
    assert summary_counts(text, "Trainable params") == [trainable]
    assert summary_counts(text, "Non-trainable params") == [non_trainable]


def test_ae_conv_summary_lists_the_keras_layers_and_shapes():
    text = summarize(make({"arch": "ae_conv"}, 128, 3), 128, 3)
    for row in [
        "input_1 (Input)",
        "conv2d (SameConv2d)",
        "(None, 128, 64, 64)",
        "conv2d_2 (SameConv2d)",
        "(None, 256, 16, 16)",
        "batch_normalization (BatchNorm2d)",
        "1,024",
        "conv2d_transpose_2 (ConvTranspose2d)",
        "(None, 3, 128, 128)",
        "Total params: 817,923",
        "Trainable params: 817,411",
        "Non-trainable params: 512",
    ]:
        assert row in text
    assert "ReLU" not in text  # activations fold into their layer, as in Keras


def test_accordion_summary_numbers_layers_across_folds():
    text = summarize(make({"arch": "accordion", "folds": 2}, 128, 3))
    assert "conv2d_5 (SameConv2d)" in text and "conv2d_transpose_5 (ConvTranspose2d)" in text
    assert "batch_normalization_1 (BatchNorm2d)" in text
    assert "Total params: 1,635,846" in text


def test_study001_vae_v1_encoder_and_decoder_counts_at_80x80x3():
    model = build_model(VAE_CONV_PRESETS["study001_vae_v1"], image_size=80, channels=3)
    assert count_params(model.encoder).trainable == 305_808
    assert count_params(model.encoder).non_trainable == 32
    assert count_params(model.decoder).trainable == 203_251
    text = summarize(model, 80, 3)
    # Encoder table, decoder table, then the combined total.
    assert summary_counts(text, "Trainable params") == [305_808, 203_251, 305_808 + 203_251]
    assert summary_counts(text) == [305_840, 203_251]
    assert "Total params (encoder + decoder): 509,091" in text
    for row in [
        "(None, 16, 5, 5)",
        "flatten (Flatten)",
        "(None, 400)",
        "102,656",
        "dense_2 (Linear)",
        "102,800",
        "reshape (Unflatten)",
        "conv2d_transpose_3 (ConvTranspose2d)",
        "(None, 3, 80, 80)",
        "3,459",
    ]:
        assert row in text


def test_study003_vae_preset_shapes():
    model = build_model(VAE_CONV_PRESETS["study003_celeba"], image_size=64, channels=3)
    assert model.latent_shape == (256,)
    assert model.loss_settings.kl_weight == 5.0 and model.loss_settings.recon_loss == "bce"
    # 64 -> 32 -> 16 -> 8 -> 4: the dense heads see 256 * 4 * 4 features.
    assert model.encoder.mu.in_features == 256 * 4 * 4
    text = summarize(model)
    assert "(None, 256, 4, 4)" in text and "(None, 3, 64, 64)" in text


def test_vae_small_flattens_to_the_seeds_5184_features_on_mnist():
    model = make({"arch": "vae_small"}, 28, 1)
    assert model.encoder.mu.in_features == 5184
    assert model.latent_dim == 8
    assert "(None, 5184)" in summarize(model)


def test_resize_decoder_has_the_same_parameter_count_as_transposed_convs():
    transposed = make({"arch": "vae_conv", "filters": [8, 16], "z_dim": 4}, 20, 3)
    resized = make(
        {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4, "decoder_upsample": "resize"}, 20, 3
    )
    assert count_params(transposed) == count_params(resized)
    assert "up_sampling2d" in summarize(resized) and "conv2d_transpose" not in summarize(resized)


# --- shapes at any image size -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
@pytest.mark.parametrize("image_size", [25, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_backward_shapes_and_range(name, image_size, channels):
    model = make(SMALL_CONFIGS[name], image_size, channels)
    model.train()
    x = torch.rand(2, channels, image_size, image_size)
    outputs = model(x)
    assert outputs["recon"].shape == x.shape and outputs["logits"].shape == x.shape
    assert outputs["recon"].min() >= 0 and outputs["recon"].max() <= 1
    assert outputs["z"].shape == (2, *model.latent_shape)
    if model.is_variational:
        assert outputs["mu"].shape == outputs["logvar"].shape == (2, model.latent_dim)
    terms = model.loss(x, outputs)
    assert all(value.ndim == 0 for value in terms.values())
    terms["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
@pytest.mark.parametrize("image_size", [11, 28, 33, 64, 80])
def test_decoder_returns_exactly_image_size(name, image_size):
    model = make(SMALL_CONFIGS[name], image_size, 1).eval()
    with torch.no_grad():
        z = model.encode(torch.rand(1, 1, image_size, image_size))["z"]
        assert model.decode(z).shape == (1, 1, image_size, image_size)


def test_same_conv_matches_keras_padding():
    for size in range(1, 12):
        conv = SameConv2d(1, 1, 3, stride=2)
        assert (
            conv(torch.zeros(1, 1, size, size)).shape[-1]
            == same_size(size, 2)
            == math.ceil(size / 2)
        )
    # On even sizes Keras pads only the bottom/right, so the first output pixel is
    # centred on input pixel 1, not 0.
    conv = SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert conv(x)[0, 0].tolist() == [[5.0, 7.0], [13.0, 15.0]]


def test_vae_small_rejects_images_smaller_than_its_kernels():
    with pytest.raises(ValueError, match="image_size above 10"):
        make({"arch": "vae_small"}, 10, 1)


def test_vae_samples_in_training_and_uses_the_mean_in_eval():
    model = make(SMALL_CONFIGS["vae_conv"], 16, 1)
    x = torch.rand(3, 1, 16, 16)
    model.eval()
    outputs = model(x)
    assert torch.equal(outputs["z"], outputs["mu"])
    assert torch.equal(model.encode(x)["z"], model.encode(x)["mu"])
    model.train()
    outputs = model(x)
    assert not torch.equal(outputs["z"], outputs["mu"])


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_sample_shapes_and_reproducibility(name):
    model = make(SMALL_CONFIGS[name], 25, 3).eval()
    first = model.sample(4, generator=torch.Generator().manual_seed(1))
    again = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert first.shape == (4, 3, 25, 25) and not first.requires_grad
    assert torch.equal(first, again)
    assert first.min() >= 0 and first.max() <= 1


def test_summary_leaves_batch_norm_statistics_and_mode_alone():
    model = make({"arch": "ae_conv"}, 16, 1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- losses by hand ---------------------------------------------------------------------------

# Two 1×1×2 "images" and their logits; targets are soft, as pixel intensities are.
LOGITS = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 0.5]]]])
TARGET = torch.tensor([[[[0.25, 1.0]]], [[[0.0, 0.5]]]])


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_bce_is_summed_per_image_and_averaged_over_the_batch():
    expected = ((_bce(0.0, 0.25) + _bce(2.0, 1.0)) + (_bce(-1.0, 0.0) + _bce(0.5, 0.5))) / 2
    loss = reconstruction_loss(LOGITS, torch.sigmoid(LOGITS), TARGET, "bce")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_mse_is_summed_per_image_and_averaged_over_the_batch():
    recon = torch.tensor([[[[0.5, 0.5]]], [[[0.0, 1.0]]]])
    expected = ((0.25**2 + 0.5**2) + (0.0 + 0.5**2)) / 2
    assert reconstruction_loss(LOGITS, recon, TARGET, "mse").item() == pytest.approx(expected)


def test_kl_closed_form():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # Sample 1: 0.5*(1 + 1 - 1 - 0) + 0.5*(0 + 2 - 1 - ln 2); sample 2: 0.
    expected = (0.5 + 0.5 * (1 - math.log(2.0)) + 0.0) / 2
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert free_bits_kl(mu, logvar, 0.0).item() == pytest.approx(expected, rel=1e-6)


def test_free_bits_floor_the_batch_mean_of_each_dimension():
    # Dimension 0: KL 0 and 0.8 (mean 0.4, under the floor); dimension 1: KL 2 and 2 (above).
    mu = torch.tensor([[0.0, 2.0], [math.sqrt(1.6), 2.0]])
    logvar = torch.zeros(2, 2)
    assert kl_divergence(mu, logvar).item() == pytest.approx(0.4 + 2.0, rel=1e-6)
    # Batch mean first: max(0.4, 0.5) + 2 = 2.5 (flooring each sample would give 2.65).
    assert free_bits_kl(mu, logvar, 0.5).item() == pytest.approx(2.5, rel=1e-6)
    assert free_bits_kl(mu, logvar, 3.0).item() == pytest.approx(6.0, rel=1e-6)


def test_kl_warm_up_ramps_linearly():
    assert kl_weight_at(0, 2.0, 4) == 0.0
    assert kl_weight_at(2, 2.0, 4) == pytest.approx(1.0)
    assert kl_weight_at(4, 2.0, 4) == 2.0
    assert kl_weight_at(9, 2.0, 4) == 2.0
    assert kl_weight_at(0, 2.0, 0) == 2.0  # 0 = off


def test_vae_loss_combines_the_terms_with_weights_warm_up_and_free_bits():
    raw = {
        **SMALL_CONFIGS["vae_mlp"],
        "recon_loss": "mse",
        "recon_weight": 3.0,
        "kl_weight": 2.0,
        "kl_warmup_epochs": 4,
        "free_bits": 0.25,
    }
    model = make(raw, 6, 1).eval()
    x = torch.rand(5, 1, 6, 6)
    outputs = model(x)
    recon = ((outputs["recon"] - x) ** 2).sum(dim=(1, 2, 3)).mean()
    per_dim = 0.5 * (outputs["mu"] ** 2 + outputs["logvar"].exp() - 1 - outputs["logvar"])
    kl = per_dim.sum(dim=1).mean()
    kl_floored = per_dim.mean(dim=0).clamp(min=0.25).sum()
    for epoch, weight in [(0, 0.0), (2, 1.0), (4, 2.0)]:
        terms = model.loss(x, outputs, epoch=epoch)
        assert set(terms) == {"recon", "kl", "kl_weight", "kl_loss", "elbo", "loss"}
        assert terms["recon"].item() == pytest.approx(recon.item(), rel=1e-5)
        assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
        assert terms["kl_loss"].item() == pytest.approx(kl_floored.item(), rel=1e-5)
        assert terms["kl_weight"].item() == pytest.approx(weight)
        assert terms["elbo"].item() == pytest.approx(-(recon + kl).item(), rel=1e-5)
        assert terms["loss"].item() == pytest.approx(
            3.0 * recon.item() + weight * kl_floored.item(), rel=1e-5
        )


def test_autoencoder_loss_is_the_weighted_reconstruction():
    model = make({"arch": "ae_pool", "recon_loss": "bce", "recon_weight": 7.0}, 9, 1).eval()
    x = torch.rand(2, 1, 9, 9)
    outputs = model(x)
    terms = model.loss(x, outputs, epoch=3)
    expected = reconstruction_loss(outputs["logits"], outputs["recon"], x, "bce")
    assert set(terms) == {"recon", "loss"}
    assert terms["recon"].item() == pytest.approx(expected.item())
    assert terms["loss"].item() == pytest.approx(7.0 * expected.item())


def test_loss_knobs_are_checked_where_params_load():
    # LossSettings is built from a validated entry only; the entry's model holds the ranges.
    with pytest.raises(ValidationError):
        VaeConvConfig(recon_loss="l1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        VaeConvConfig(kl_weight=-1.0)
    with pytest.raises(ValidationError):
        AeConvConfig(recon_weight=0.0)


# --- configs --------------------------------------------------------------------------------


class _Holder(Section):
    models: dict[str, ModelConfig]


def test_design_examples_validate_into_their_classes():
    holder = _Holder.model_validate(
        {
            "models": {
                "ae_pool": {"arch": "ae_pool"},
                "ae_conv": {"arch": "ae_conv"},
                "accordion": {"arch": "accordion", "folds": 2},
                "vae": {
                    "arch": "vae_conv",
                    "filters": [32, 64, 128, 256],
                    "z_dim": 256,
                    "recon_loss": "bce",
                    "kl_weight": 5.0,
                },
                "mlp": {"arch": "vae_mlp", "hidden": [512, 256], "z_dim": 2},
                "small": {"arch": "vae_small", "z_dim": 8},
                "gan": {
                    "arch": "vae_gan",
                    "filters": [16, 32, 64],
                    "z_dim": 16,
                    "discriminator": [32, 64, 128],
                },
            }
        }
    )
    assert set(ARCHITECTURES) == {entry.arch for entry in holder.models.values()}
    vae = holder.models["vae"]
    assert (
        isinstance(vae, VaeConvConfig)
        and vae.filters == (32, 64, 128, 256)
        and vae.kl_weight == 5.0
    )
    assert holder.models["small"].recon_loss == "mse"  # study 004's loss


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"arch": "transformer"}, "does not match any of the expected tags"),
        ({"arch": "accordion", "folds": 0}, "folds"),
        ({"arch": "accordion", "folds": 1.5}, "folds"),
        ({"arch": "vae_conv", "filtrs": [8]}, "filtrs"),
        ({"arch": "ae_pool", "kl_weight": 1.0}, "kl_weight"),  # AEs have no KL term
        ({"arch": "vae_conv", "filters": []}, "filters"),
        ({"arch": "vae_conv", "filters": [8, -1]}, "filters"),
        ({"arch": "vae_conv", "kernel": 4}, "kernel must be odd"),
        ({"arch": "vae_conv", "z_dim": 0}, "z_dim"),
        ({"arch": "vae_conv", "batch_norm": "first"}, "batch_norm"),
        ({"arch": "vae_mlp", "recon_loss": "l1"}, "recon_loss"),
        ({"arch": "vae_mlp", "kl_weight": -0.5}, "kl_weight"),
        ({"arch": "vae_mlp", "free_bits": -1}, "free_bits"),
        ({"arch": "vae_mlp", "kl_warmup_epochs": -2}, "kl_warmup_epochs"),
        ({"arch": "ae_conv", "recon_weight": 0}, "recon_weight"),
        (
            {"arch": "vae_small", "filters": [4, 4], "kernels": [3, 3, 3]},
            "one entry per conv layer",
        ),
        ({}, "arch"),
    ],
)
def test_bad_model_configs_raise_validation_errors(raw, fragment):
    with pytest.raises(ValidationError) as info:
        parse_model_config(raw)
    assert fragment in str(info.value)


def test_configs_are_frozen():
    config = parse_model_config({"arch": "accordion", "folds": 3})
    with pytest.raises(ValidationError):
        config.folds = 4  # type: ignore[misc]


def test_variational_false_is_the_vaes_own_trunk_without_the_posterior():
    vae_cfg = VaeConvConfig(filters=(8, 16), z_dim=6)
    ae_cfg = VaeConvConfig(filters=(8, 16), z_dim=6, variational=False)
    vae, ae = (
        build_model(vae_cfg, image_size=12, channels=1),
        build_model(ae_cfg, image_size=12, channels=1),
    )
    assert vae.is_variational and not ae.is_variational
    assert ae.latent_shape == vae.latent_shape == (6,)
    # One dense head to z instead of mu and logvar: the VAE has exactly one more head.
    logvar_head = sum(p.numel() for p in vae.encoder.logvar.parameters())
    assert count_params(vae).trainable - count_params(ae).trainable == logvar_head
    x = torch.rand(3, 1, 12, 12)
    outputs = ae(x)
    assert set(outputs) == {"z", "logits", "recon"} and set(ae.loss(x, outputs)) == {
        "recon",
        "loss",
    }


def test_kl_knobs_are_refused_without_a_posterior():
    with pytest.raises(ValidationError, match="kl_weight would do nothing with variational: false"):
        VaeConvConfig(variational=False, kl_weight=5.0)
    # Defaults written out in full (a saved config.json) are not a KL setting.
    dumped = VaeConvConfig(variational=False).model_dump(mode="json")
    assert parse_model_config(dumped).variational is False
