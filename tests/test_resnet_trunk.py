"""Residual trunks (``trunk: plain | resnet``): plain is today's network weight for weight,
resnet adds the blocks it says at every resolution, and such models train, save and load."""

from __future__ import annotations

import hashlib

import pytest
import torch

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from vaelab.config import params_from_dict
from vaelab.config.model_config import parse_model_config
from vaelab.errors import UserError
from vaelab.models import Autoencoder, build_model, count_params, summarize
from vaelab.models.layers import ResidualBlock, SameConv2d

# The default variants of params.yaml before the knob existed, as entries (not read from
# params.yaml, whose defaults may change), built with seed 0 at its 32×32 grey: trainable
# parameters and a digest of the state dict's names and bytes. A plain trunk must keep them,
# so models trained before the knob load and reproduce unchanged.
TRUNK = {
    "arch": "vae_conv",
    "filters": [16, 32, 64],
    "z_dim": 16,
    "recon_loss": "bce",
    "epochs": 120,
}
VAE = {**TRUNK, "variational": True, "kl_weight": 0.5, "kl_warmup_epochs": 10}
DEFAULTS = {
    "ae_pool": ({"arch": "ae_pool"}, 47_425, "1fb02f4e03ba1e64"),
    "ae_conv": ({"arch": "ae_conv"}, 813_953, "f506dfed697b8627"),
    "accordion": ({"arch": "accordion", "folds": 2}, 1_627_906, "aa687b42e6f10a84"),
    "ae_z16": ({**TRUNK, "variational": False}, 80_337, "48e1f5988c1b39e5"),
    "vae": (VAE, 96_737, "62e0a4522c7aaf1e"),
    "vae_z4": ({**VAE, "z_dim": 4}, 59_849, "bb97aabb83cbfde8"),
    "vae_z64": ({**VAE, "z_dim": 64}, 244_289, "c2f51831749cbc6d"),
    "vae_study003": (
        {
            **VAE,
            "filters": [32, 64, 128, 256],
            "z_dim": 256,
            "kl_weight": 5.0,
            "kl_warmup_epochs": 0,
            "epochs": None,
        },
        1_563_393,
        "3787cd9476a59559",
    ),
}
VAE_KEYS = [
    "encoder.body.0.weight",
    "encoder.body.0.bias",
    "encoder.body.2.weight",
    "encoder.body.2.bias",
    "encoder.body.4.weight",
    "encoder.body.4.bias",
    "encoder.mu.weight",
    "encoder.mu.bias",
    "encoder.logvar.weight",
    "encoder.logvar.bias",
    "decoder.0.weight",
    "decoder.0.bias",
    "decoder.3.weight",
    "decoder.3.bias",
    "decoder.5.weight",
    "decoder.5.bias",
    "decoder.7.weight",
    "decoder.7.bias",
]

TINY = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 3}


def make(raw: dict, image_size: int = 16, channels: int = 1) -> Autoencoder:
    torch.manual_seed(0)
    return build_model(parse_model_config(raw), image_size=image_size, channels=channels)


def digest(model: torch.nn.Module) -> str:
    state = hashlib.sha256()
    for name, value in model.state_dict().items():
        state.update(name.encode())
        state.update(value.contiguous().numpy().tobytes())
    return state.hexdigest()[:16]


def block_params(maps: int, kernel: int) -> int:
    """Two maps→maps convs with biases."""
    return 2 * (maps * maps * kernel * kernel + maps)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_the_default_variants_are_built_exactly_as_before_the_knob(name):
    raw, trainable, weights = DEFAULTS[name]
    written_out = (
        [{**raw, "trunk": "plain"}] if raw["arch"] != "ae_pool" else []
    )  # ae_pool has no trunk
    for entry in [raw, *written_out]:
        model = make(entry, 32, 1)
        assert count_params(model).trainable == trainable
        assert digest(model) == weights
        assert not any(isinstance(module, ResidualBlock) for module in model.modules())
    if name == "vae":
        assert list(make(raw, 32, 1).state_dict()) == VAE_KEYS


def test_a_plain_trunk_gives_the_same_outputs_as_no_trunk_key():
    x = torch.rand(2, 1, 32, 32)
    default, plain = make(VAE, 32, 1).eval(), make({**VAE, "trunk": "plain"}, 32, 1).eval()
    with torch.no_grad():
        assert torch.equal(default(x)["recon"], plain(x)["recon"])


def test_a_residual_block_adds_its_branch_to_the_identity():
    block = ResidualBlock(1, 1)
    with torch.no_grad():
        first, second = block.residual[1], block.residual[3]
        assert isinstance(first, SameConv2d) and isinstance(second, SameConv2d)
        first.weight.fill_(2.0), first.bias.zero_()
        second.weight.fill_(3.0), second.bias.fill_(1.0)
        x = torch.tensor([[[[-1.0, 0.5]]]])
        # x + 3 relu(2 relu(x)) + 1: -1 + 0 + 1 = 0 and 0.5 + 3 + 1 = 4.5.
        assert block(x).tolist() == [[[[0.0, 4.5]]]]
        first.weight.zero_(), second.weight.zero_(), second.bias.zero_()
        assert torch.equal(block(x), x)  # a zero branch is the identity


@pytest.mark.parametrize(
    ("kernel", "batch_norm"), [(3, "none"), (5, "none"), (3, "last"), (3, "all")]
)
def test_resnet_adds_one_block_per_resolution_to_encoder_and_decoder(kernel, batch_norm):
    raw = {**TINY, "kernel": kernel, "batch_norm": batch_norm}
    plain, resnet = make(raw), make({**raw, "trunk": "resnet"})
    # Encoder: after the 4- and 8-map convs; decoder: at the 8-map bottleneck and after the
    # 4-map upsampling. Batch norm inside the blocks only where every hidden conv has it.
    per_side = block_params(4, kernel) + block_params(8, kernel)
    # Two batch norms a block, each with 2 × maps weights and 2 × maps running statistics.
    norms_per_side = 2 * (2 * 4 + 2 * 8) if batch_norm == "all" else 0
    assert (
        count_params(resnet.encoder).trainable - count_params(plain.encoder).trainable
        == per_side + norms_per_side
    )
    assert count_params(resnet).trainable - count_params(plain).trainable == 2 * (
        per_side + norms_per_side
    )
    assert (
        count_params(resnet).non_trainable - count_params(plain).non_trainable == 2 * norms_per_side
    )
    assert sum(isinstance(module, ResidualBlock) for module in resnet.modules()) == 4
    text = summarize(resnet)
    assert "(None, 8, 4, 4)" in text and text.count("(SameConv2d)") == 2 + 4 * 2


def test_ae_conv_resnet_counts_at_the_seed_size():
    # Blocks of 128, 128, 256 maps in the encoder, 256, 128, 64 in the decoder, 3×3 kernels.
    plain, resnet = (
        make({"arch": "ae_conv"}, 128, 3),
        make({"arch": "ae_conv", "trunk": "resnet"}, 128, 3),
    )
    extra = sum(block_params(maps, 3) for maps in (128, 128, 256, 256, 128, 64))
    assert extra == 3_319_680
    assert (
        count_params(resnet).trainable == count_params(plain).trainable + extra == 817_411 + extra
    )
    assert count_params(resnet).non_trainable == 512
    accordion = make({"arch": "accordion", "folds": 2, "trunk": "resnet"}, 16, 1)
    assert sum(isinstance(module, ResidualBlock) for module in accordion.modules()) == 2 * 6


@pytest.mark.parametrize(
    "raw",
    [
        {**TINY, "trunk": "resnet"},
        {**TINY, "trunk": "resnet", "decoder_upsample": "resize", "variational": False},
        {"arch": "ae_conv", "trunk": "resnet"},
    ],
)
@pytest.mark.parametrize("image_size", [11, 25, 33])
def test_resnet_keeps_every_image_size(raw, image_size):
    model = make(raw, image_size, 3)
    x = torch.rand(2, 3, image_size, image_size)
    outputs = model.train()(x)
    assert outputs["recon"].shape == x.shape and outputs["z"].shape == (2, *model.latent_shape)
    model.loss(x, outputs)["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**TINY, "trunk": "dense"},
            "models.v.trunk: 'dense' is not allowed: Input should be 'plain' or 'resnet'",
        ),
        ({"arch": "ae_pool", "trunk": "resnet"}, "models.v.trunk: unknown key"),
        ({"arch": "vae_mlp", "trunk": "resnet"}, "models.v.trunk: unknown key"),
    ],
)
def test_a_wrong_trunk_is_one_message_naming_the_key(entry, expected):
    with pytest.raises(UserError) as info:
        params_from_dict({"models": {"v": entry}})
    assert expected in str(info.value) and "problems" not in str(info.value)


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize(
    "raw",
    [
        {**TINY, "trunk": "resnet"},
        {**TINY, "trunk": "resnet", "batch_norm": "all", "variational": False},
        {
            **TINY,
            "trunk": "resnet",
            "recon_loss": "gaussian",
            "sigma": "learned",
        },  # both remedies at once
    ],
)
def test_a_resnet_trunk_trains_saves_and_loads_back(tmp_path, image_size, channels, raw):
    fitted = fit(raw, image_size, channels, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
    assert any(isinstance(module, ResidualBlock) for module in fitted.loaded.modules())


def test_an_ae_conv_resnet_trains_saves_and_loads_back(tmp_path):
    fitted = fit({"arch": "ae_conv", "trunk": "resnet"}, 16, 1, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
