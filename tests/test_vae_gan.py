"""VAE-GAN (``arch: vae_gan``, Larsen et al. 2016): the patch discriminator's shapes, the feature
and adversarial terms by hand, the two steps leaving each other's weights alone, both
optimisers in the checkpoint, the config checks, and models that train, save, load and serve."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from tests.support.trained import workspace_fixture
from tests.test_config import uncommented_params
from vaelab.config import params_from_dict
from vaelab.config.model_config import VaeGanConfig, parse_model_config
from vaelab.config.train_config import TrainConfig
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.errors import UserError
from vaelab.models import build_model, count_params, summarize
from vaelab.models.losses import reconstruction_loss
from vaelab.models.saved import load_trained
from vaelab.models.vae_gan import (
    DISCRIMINATOR_BETAS,
    PatchDiscriminator,
    VaeGan,
    feature_error,
    patch_bce,
)
from vaelab.runtime import Runtime, select_runtime
from vaelab.train.batches import Batches
from vaelab.train.loop import train_model
from vaelab.train.train import run_train

TINY_GAN = {"arch": "vae_gan", "filters": [4, 8], "z_dim": 4, "discriminator": [4, 8]}
# The terms a VAE-GAN adds to a VAE's: the model's, then its discriminator's.
GENERATOR_TERMS = {"feature", "adversarial", "adversarial_prior"}
DISCRIMINATOR_TERMS = {"discriminator_loss", "discriminator_real", "discriminator_fake"}

workspace = pytest.fixture(workspace_fixture)


def make(raw: dict, image_size: int = 16, channels: int = 1) -> VaeGan:
    torch.manual_seed(0)
    return build_model(parse_model_config(raw), image_size=image_size, channels=channels)


def snapshot(parameters) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parameters]


def same(parameters, saved: list[torch.Tensor]) -> list[bool]:
    return [torch.equal(p.detach(), s) for p, s in zip(parameters, saved, strict=True)]


@pytest.mark.parametrize(("image_size", "patches"), [(16, 2), (32, 4), (64, 8), (25, 4)])
def test_the_discriminator_gives_one_logit_per_patch(image_size, patches):
    discriminator = PatchDiscriminator(3, (32, 64, 128), feature_layer=2)
    logits, features = discriminator(torch.rand(2, 3, image_size, image_size))
    # Three 'same' stride-2 convs: ceil(n / 8) patches a side; the second conv's 64 maps at
    # ceil(n / 4).
    assert logits.shape == (2, 1, patches, patches)
    assert features.shape == (2, 64, math.ceil(image_size / 4), math.ceil(image_size / 4))
    _, first = PatchDiscriminator(3, (32, 64, 128), feature_layer=1)(
        torch.rand(2, 3, image_size, image_size)
    )
    assert first.shape == (2, 32, math.ceil(image_size / 2), math.ceil(image_size / 2))


def hand_model(**knobs) -> VaeGan:
    """A 4x4 grey VAE-GAN whose one-conv discriminator picks pixel (2i, 2j) minus 0.5 as its
    feature (i, j) and calls every patch real with the logit 0.3."""
    model = make(
        {
            "arch": "vae_gan",
            "filters": [2],
            "z_dim": 2,
            "discriminator": [1],
            "feature_layer": 1,
            **knobs,
        },
        image_size=4,
    )
    conv, head = model.discriminator.convs[0][0], model.discriminator.logits
    with torch.no_grad():
        # 'same' 4x4 stride-2 padding at 4 px: one row and column before, one after.
        conv.weight.zero_(), conv.weight[0, 0, 1, 1].fill_(1.0), conv.bias.fill_(-0.5)
        head.weight.zero_(), head.bias.fill_(0.3)
    return model


# Two 4x4 grey images and their reconstructions; the discriminator sees pixels (0|2, 0|2).
REAL = torch.full((2, 1, 4, 4), 0.5)
REAL[0, 0, ::2, ::2] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
REAL[1, 0, ::2, ::2] = 1.0
FAKE = torch.full((2, 1, 4, 4), 0.5)
FAKE[0, 0, ::2, ::2] = torch.tensor([[0.75, 0.25], [0.5, 0.5]])


def hand_outputs(prior: bool) -> dict[str, torch.Tensor]:
    outputs = {
        "mu": torch.zeros(2, 2),
        "logvar": torch.zeros(2, 2),
        "z": torch.zeros(2, 2),
        "logits": torch.logit(FAKE),
        "recon": FAKE,
    }
    if prior:
        outputs |= {"prior_logits": torch.zeros(2, 1, 4, 4), "prior": torch.full((2, 1, 4, 4), 0.5)}
    return outputs


def test_the_feature_reconstruction_and_the_adversarial_terms_by_hand():
    model = hand_model(recon_weight=3.0, feature_weight=2.0, adversarial_weight=0.5)
    terms = model.loss(REAL, hand_outputs(prior=True))
    # Features leaky(x - 0.5): real (0.5, -0.1, -0.1, 0.5) and (0.5, 0.5, 0.5, 0.5),
    # fake (0.25, -0.05, 0, 0) and (0, 0, 0, 0); half the squared distances:
    # 0.5 (0.0625 + 0.0025 + 0.01 + 0.25) = 0.1625 and 0.5.
    assert terms["feature"].item() == pytest.approx((0.1625 + 0.5) / 2)
    # Four patches an image, each -log sigmoid(0.3); the prior samples' the same.
    fooled = 4 * math.log1p(math.exp(-0.3))
    assert terms["adversarial"].item() == pytest.approx(fooled)
    assert terms["adversarial_prior"].item() == pytest.approx(fooled)
    recon = reconstruction_loss(torch.logit(FAKE), FAKE, REAL, "bce")
    assert terms["recon"].item() == pytest.approx(recon.item()) and terms["kl"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(
        3.0 * recon.item() + 2.0 * 0.33125 + 0.5 * 2 * fooled
    )
    # Without prior samples (eval mode) the adversarial term is the reconstructions' alone.
    assert "adversarial_prior" not in model.loss(REAL, hand_outputs(prior=False))


def test_the_discriminator_loss_by_hand():
    model = hand_model()
    terms = model.discriminator_loss(REAL, hand_outputs(prior=True))
    # -log D(x) on 4 real patches, -log(1 - D) on 4 patches of each of the two kinds of fake.
    expected = 4 * math.log1p(math.exp(-0.3)) + 2 * 4 * math.log1p(math.exp(0.3))
    assert terms["discriminator_loss"].item() == pytest.approx(expected)
    assert (
        terms["discriminator_real"].item()
        == terms["discriminator_fake"].item()
        == pytest.approx(1 / (1 + math.exp(-0.3)))
    )
    without_prior = model.discriminator_loss(REAL, hand_outputs(prior=False))["discriminator_loss"]
    assert without_prior.item() == pytest.approx(expected - 4 * math.log1p(math.exp(0.3)))


def test_patch_bce_and_feature_error_are_torch_s_own_per_image_sums():
    logits = torch.randn(3, 1, 2, 2)
    by_torch = (
        F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="sum") / 3
    )
    assert patch_bce(logits, real=True).item() == pytest.approx(by_torch.item())
    fake, real = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    nll = -torch.distributions.Normal(real, 1.0).log_prob(fake).flatten(1).sum(1).mean()
    assert feature_error(fake, real).item() == pytest.approx(
        nll.item() - 16 * 0.5 * math.log(2 * math.pi)
    )


def test_the_generator_is_the_vae_conv_of_the_same_knobs_weight_for_weight():
    vae_knobs = {k: v for k, v in TINY_GAN.items() if k != "discriminator"} | {"kl_weight": 0.5}
    gan, vae = make({**vae_knobs, "arch": "vae_gan"}), make({**vae_knobs, "arch": "vae_conv"})
    ours = {k: v for k, v in gan.state_dict().items() if not k.startswith("discriminator.")}
    assert list(ours) == list(vae.state_dict())
    torch.testing.assert_close(ours, vae.state_dict(), rtol=0, atol=0)
    assert (
        count_params(gan).trainable
        == count_params(vae).trainable + count_params(gan.discriminator).trainable
    )
    # Serving never calls the discriminator: in eval mode the outputs are the VAE's.
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        served, plain = gan.eval()(x), vae.eval()(x)
    assert served.keys() == plain.keys() and all(torch.equal(served[k], plain[k]) for k in served)


def test_the_summary_shows_the_discriminator_in_a_table_of_its_own():
    model = make(TINY_GAN)
    text = summarize(model)
    table = text.split('Model: "VaeGan.discriminator"')[1]
    # Two 4x4 stride-2 convs (1 -> 4 -> 8 maps) and the 3x3 conv to a 4x4 map of patch logits.
    assert (
        "(None, 4, 8, 8)     68" in table
        and "(None, 8, 4, 4)     520" in table
        and "(None, 1, 4, 4)" in table
    )
    assert f"Total params: {count_params(model.discriminator).total:,}" in table
    assert (
        f"Total params (encoder + decoder + discriminator): {count_params(model).total:,}" in text
    )


def test_the_two_steps_leave_each_other_s_weights_alone():
    model = make(TINY_GAN).train()
    generator, judge = model.generator_parameters(), list(model.discriminator.parameters())
    assert len(generator) + len(judge) == len(list(model.parameters()))
    optimizer = torch.optim.Adam(generator, lr=1e-2)
    critic = model.discriminator_optimizer(1e-2)
    x = torch.rand(4, 1, 16, 16)

    # The model's step: the discriminator enters frozen, no gradient accumulates in it.
    outputs = model(x)
    assert outputs["prior"].shape == x.shape
    before = snapshot(judge), snapshot(generator)
    model.loss(x, outputs)["loss"].backward()
    assert all(p.grad is None for p in judge)
    assert all(p.grad is not None for p in generator)
    optimizer.step()
    assert all(same(judge, before[0])) and not any(same(generator, before[1]))

    # The discriminator's step on the detached fakes: no gradient reaches the model.
    optimizer.zero_grad(set_to_none=True)
    before = snapshot(judge), snapshot(generator)
    model.discriminator_loss(x, outputs)["discriminator_loss"].backward()
    assert all(p.grad is None for p in generator) and all(p.grad is not None for p in judge)
    critic.step()
    assert all(same(generator, before[1])) and not any(same(judge, before[0]))


@pytest.mark.parametrize("image_size", [11, 25, 33])
def test_every_image_size_trains_both_sides(image_size, torch_globals):
    torch.use_deterministic_algorithms(
        True
    )  # and no op lacks a deterministic CPU kernel (raise, not warn)
    model = make(TINY_GAN, image_size, 3).train()
    x = torch.rand(2, 3, image_size, image_size)
    outputs = model(x)
    assert outputs["recon"].shape == outputs["prior"].shape == x.shape
    terms = model.loss(x, outputs) | model.discriminator_loss(x, outputs)
    assert set(terms) >= GENERATOR_TERMS | DISCRIMINATOR_TERMS and all(
        v.ndim == 0 for v in terms.values()
    )
    (terms["loss"] + terms["discriminator_loss"]).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_both_steps_run_under_bf16_autocast(tmp_path):
    # The CPU's bf16 autocast, as the loop opens it on a GPU: half-precision fakes meet fp32 images.
    images = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 1), dtype=np.uint8)
    train = Batches(images[:8], batch_size=4, device=torch.device("cpu"), seed=0)
    val = Batches(images[8:], batch_size=4, device=torch.device("cpu"), seed=0, shuffle=False)
    runtime = Runtime(device=torch.device("cpu"), autocast_dtype=torch.bfloat16)
    result = train_model(
        make(TINY_GAN),
        train,
        val,
        TrainConfig(epochs=1, batch_size=4),
        runtime,
        checkpoint_path=tmp_path / "ckpt.pt",
        config_hash="bf16",
        progress=False,
    )
    row = result.history[-1]
    assert result.steps == 2 and all(math.isfinite(value) for value in row.values())
    assert {"train_discriminator_loss", "val_discriminator_loss"} <= set(row)


def test_both_optimisers_are_in_the_checkpoint(tmp_path):
    fitted = fit({**TINY_GAN, "discriminator_lr": 2e-4}, 16, 1, tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    optimizers = saved["optimizers"]
    assert set(optimizers) == {"model", "discriminator"}
    model, judge = optimizers["model"], optimizers["discriminator"]
    assert model["param_groups"][0]["lr"] == 1e-3 and model["param_groups"][0]["betas"] == (
        0.9,
        0.999,
    )
    assert (
        judge["param_groups"][0]["lr"] == 2e-4
        and judge["param_groups"][0]["betas"] == DISCRIMINATOR_BETAS
    )
    # One Adam state per parameter of its side, stepped twice.
    assert len(model["state"]) == len(fitted.model.generator_parameters())
    assert len(judge["state"]) == len(list(fitted.model.discriminator.parameters()))
    assert all(
        state["step"].item() == 2 for opt in optimizers.values() for state in opt["state"].values()
    )
    # The discriminator's weights are the model's, in the checkpoint and in model.pt.
    assert any(name.startswith("discriminator.") for name in saved["model"])


def test_the_discriminator_lr_defaults_to_train_lr():
    assert make(TINY_GAN).discriminator_optimizer(0.01).param_groups[0]["lr"] == 0.01
    assert (
        make({**TINY_GAN, "discriminator_lr": 1e-4})
        .discriminator_optimizer(0.01)
        .param_groups[0]["lr"]
        == 1e-4
    )


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize(
    "raw",
    [
        TINY_GAN,
        # Larsen's: no pixel term, the reconstruction in the discriminator's features alone; the
        # default discriminator.
        {"arch": "vae_gan", "filters": [4, 8], "z_dim": 4, "recon_weight": 0, "feature_layer": 3},
        {
            **TINY_GAN,
            "trunk": "resnet",
            "recon_loss": "gaussian",
            "sigma": "learned",
        },  # with the other remedies
    ],
)
def test_a_vae_gan_trains_saves_and_loads_back(tmp_path, image_size, channels, raw):
    fitted = fit(raw, image_size, channels, tmp_path)
    assert_trained(fitted)  # the discriminator's weights moved too: its optimiser stepped
    assert_round_trip(fitted)
    row = fitted.result.history[-1]
    assert {f"train_{term}" for term in GENERATOR_TERMS | DISCRIMINATOR_TERMS} <= set(row)
    assert {f"val_{term}" for term in DISCRIMINATOR_TERMS | {"feature", "adversarial"}} <= set(row)
    assert "val_adversarial_prior" not in row  # eval mode decodes no prior samples
    assert isinstance(fitted.loaded, VaeGan)


def test_the_train_stage_logs_both_sides_losses_to_mlflow_every_epoch(workspace, make_params):
    params = make_params(
        {
            "train": {"epochs": 2, "batch_size": 16, "seeds": 1, "device": "cpu"},
            "models": {"gan": TINY_GAN},
        }
    )
    run_download(params, raw_root=workspace.root / "raw")
    run_prepare(
        params,
        raw_root=workspace.root / "raw",
        out_dir=workspace.root / "prepared",
        metrics_path=workspace.root / "data.json",
        progress=False,
    )
    run_train(
        params,
        "gan",
        prepared=workspace.root / "prepared",
        models_root=workspace.models,
        metrics_root=workspace.metrics,
        progress=False,
    )

    client = workspace.client()
    (run,) = client.search_runs(
        [client.get_experiment_by_name("vaelab").experiment_id],
        filter_string="tags.stage = 'train'",
    )
    assert run.info.status == "FINISHED" and run.data.tags["arch"] == "vae_gan"
    logged = {
        key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }
    expected = {
        f"train_{term}" for term in GENERATOR_TERMS | DISCRIMINATOR_TERMS | {"loss", "recon", "kl"}
    } | {f"val_{term}" for term in DISCRIMINATOR_TERMS | {"feature", "adversarial", "loss"}}
    assert expected <= set(logged) and all(logged[key] == [1, 2] for key in expected)
    history = (workspace.metrics / "history" / "gan.csv").read_text().splitlines()
    assert len(history) == 3 and {"train_discriminator_loss", "val_discriminator_loss"} <= set(
        history[0].split(",")
    )
    loaded, _config = load_trained(workspace.models / "gan" / "seed0")
    assert isinstance(loaded, VaeGan)


def test_the_registry_pyfunc_serves_a_vae_gan(tmp_path):
    from vaelab.registry.pyfunc import VaelabPyfunc

    fitted = fit(TINY_GAN, 16, 1, tmp_path)
    pyfunc = VaelabPyfunc.from_folder(tmp_path / "model")
    pixels = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    recon = pyfunc.predict(None, pixels)
    with torch.no_grad():
        expected = fitted.loaded(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)[
            "recon"
        ]
    np.testing.assert_array_equal(recon, expected.permute(0, 2, 3, 1).numpy())
    assert pyfunc.predict(None, pixels, params={"mode": "encode"}).shape == (3, 4)
    assert pyfunc.generate(2, seed=0).shape == (2, 16, 16, 1)


def test_a_vae_gan_under_torchrun_is_refused_before_the_first_step(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        images = np.zeros((4, 16, 16, 1), dtype=np.uint8)
        batches = Batches(images, batch_size=4, device=torch.device("cpu"), seed=0)
        with pytest.raises(UserError, match="vae_gan trains in one process only"):
            train_model(
                make(TINY_GAN),
                batches,
                batches,
                TrainConfig(epochs=1),
                select_runtime("cpu", "fp32", key="train"),
                checkpoint_path=tmp_path / "ckpt.pt",
                config_hash="x",
                progress=False,
            )
    finally:
        dist.destroy_process_group()
    assert not (tmp_path / "ckpt.pt").exists()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**TINY_GAN, "feature_layer": 3},
            "models.v: feature_layer 3 is past the discriminator's 2 conv(s); use 1 to 2",
        ),
        (
            {**TINY_GAN, "recon_weight": 0, "feature_weight": 0},
            "models.v: recon_weight and feature_weight are both 0, "
            "so nothing trains the reconstruction",
        ),
        ({**TINY_GAN, "variational": False}, "models.v: vae_gan needs variational: true"),
        ({**TINY_GAN, "discriminator": []}, "models.v.discriminator: [] is not allowed"),
        ({**TINY_GAN, "discriminator": [8, 0]}, "models.v.discriminator.1: 0 is not allowed"),
        ({**TINY_GAN, "discriminator_lr": 0}, "models.v.discriminator_lr: 0 is not allowed"),
        ({**TINY_GAN, "adversarial_weight": -1}, "models.v.adversarial_weight: -1 is not allowed"),
        ({**TINY_GAN, "feature_weight": -0.5}, "models.v.feature_weight: -0.5 is not allowed"),
        ({**TINY_GAN, "feature_layer": 0}, "models.v.feature_layer: 0 is not allowed"),
        # The adversarial knobs are vae_gan's, and only a vae_gan may drop the pixel term.
        (
            {"arch": "vae_conv", "adversarial_weight": 1.0},
            "models.v.adversarial_weight: unknown key",
        ),
        ({"arch": "vae_conv", "recon_weight": 0}, "models.v.recon_weight: 0 is not allowed"),
    ],
)
def test_a_wrong_adversarial_knob_is_one_message_naming_the_key(entry, expected):
    with pytest.raises(UserError) as info:
        params_from_dict({"models": {"v": entry}})
    assert expected in str(info.value) and "problems" not in str(info.value)


def test_the_commented_vae_gan_in_params_is_the_vae_with_a_discriminator():
    raw, names = uncommented_params()
    assert "vae_gan" in names
    params = params_from_dict(raw)
    gan, vae = params.models["vae_gan"], params.models["vae"]
    assert isinstance(gan, VaeGanConfig)
    # Everything vae sets, vae_gan keeps: it differs in the discriminator and its terms alone.
    assert {
        k: v for k, v in gan.model_dump().items() if k in type(vae).model_fields and k != "arch"
    } == {k: v for k, v in vae.model_dump().items() if k != "arch"}
    assert parse_model_config(gan.model_dump(mode="json")) == gan  # config.json round trip
