"""Deterministic autoencoders that generate (issue 14, remedy 5): WAE-MMD's and RAE's penalties by
hand, the config checks, that the plain AE is untouched, and penalised models that train, save
and load back."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from tests.test_resnet_trunk import DEFAULTS, TRUNK, digest, make
from vaelab.config import params_from_dict
from vaelab.errors import UserError
from vaelab.models import count_params
from vaelab.models.latent_penalties import (
    decoder_gradient_penalty,
    decoder_l2,
    imq_kernel,
    latent_norm,
    mmd_imq,
    penalty_terms,
    weighted_penalty,
)
from vaelab.models.losses import LossSettings

AE = {**TRUNK, "variational": False}  # ae_z16 of params.yaml
TINY_AE = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 3, "variational": False}
WAE = {**TINY_AE, "mmd_weight": 10.0}
RAE_GP = {**TINY_AE, "latent_norm_weight": 0.5, "decoder_reg": "gp", "decoder_reg_weight": 2.0}
RAE_L2 = {**TINY_AE, "latent_norm_weight": 0.5, "decoder_reg": "l2", "decoder_reg_weight": 1e-3}


# ---------------------------------------------------------------------------------------- MMD


def test_the_imq_u_statistic_of_three_points_by_hand():
    # d = 1, so C = 2 d σ_z² = 2 and k(a, b) = 2 / (2 + (a − b)²).
    codes, prior = [0.0, 1.0, 3.0], [-1.0, 0.0, 1.0]

    def k(a: float, b: float) -> Fraction:
        return Fraction(2) / (2 + Fraction(a - b) ** 2)

    def within(points: list[float]) -> Fraction:
        return sum((k(a, b) for a, b in itertools.permutations(points, 2)), Fraction(0)) / 6

    cross = sum((k(a, b) for a in codes for b in prior), Fraction(0)) * 2 / 9
    # Pairs of codes: 2/3, 2/11, 1/3 (twice each); of prior draws 2/3, 1/3, 2/3; the cross sum
    # 491/99.
    assert (
        within(codes) == Fraction(13, 33)
        and within(prior) == Fraction(5, 9)
        and cross == Fraction(982, 891)
    )
    expected = within(codes) + within(prior) - cross
    assert expected == Fraction(-136, 891)  # unbiased: it may come out below 0
    got = mmd_imq(torch.tensor(codes)[:, None], torch.tensor(prior)[:, None])
    assert got.dtype == torch.float32 and got.item() == pytest.approx(float(expected), abs=1e-6)


def test_the_kernel_scale_is_two_d_sigma_squared_and_scales_add_up():
    torch.manual_seed(0)
    codes, prior = torch.randn(5, 4) + 1.0, torch.randn(6, 4)
    x, y = codes.double().numpy(), prior.double().numpy()

    def loop(scale: float) -> float:
        k = lambda a, b: scale / (scale + float(np.sum((a - b) ** 2)))  # noqa: E731
        n, m = len(x), len(y)
        return (
            sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
            + sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
            - 2 * sum(k(a, b) for a in x for b in y) / (n * m)
        )

    assert mmd_imq(codes, prior).item() == pytest.approx(loop(2 * 4), rel=1e-5)
    assert mmd_imq(codes, prior, sigma_z=0.5).item() == pytest.approx(loop(2 * 4 * 0.25), rel=1e-5)
    # The WAE code's sum over scales of C is the sum of the single-scale statistics.
    scales = (0.1, 1.0, 10.0)
    assert mmd_imq(codes, prior, scales=scales).item() == pytest.approx(
        sum(loop(8 * s) for s in scales), rel=1e-5
    )
    # Codes of any shape are flattened; the kernel's values are in (0, 1], 1 on the diagonal.
    assert (
        mmd_imq(codes.reshape(5, 2, 2), prior.reshape(6, 2, 2)).item()
        == mmd_imq(codes, prior).item()
    )
    kernel = imq_kernel(codes, codes, 8.0)
    assert torch.equal(kernel.diagonal(), torch.ones(5)) and bool(
        ((kernel > 0) & (kernel <= 1)).all()
    )


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    generator = torch.Generator().manual_seed(0)
    draws = [torch.randn(400, 8, generator=generator) for _ in range(2)]
    same = mmd_imq(*draws).item()
    shifted = [mmd_imq(draws[0] + shift, draws[1]).item() for shift in (0.5, 1.0, 2.0)]
    assert abs(same) < 2e-3
    assert shifted[0] > 20 * abs(same) and shifted[0] < shifted[1] < shifted[2]
    # Identical sets: the within terms are equal, the cross term counts the k(x, x) = 1 pairs too.
    n, x = 10, draws[0][:10]
    off_diagonal = imq_kernel(x, x, 16.0).sum() - n
    assert mmd_imq(x, x).item() == pytest.approx(
        (2 * off_diagonal / (n * (n - 1)) - 2 * (off_diagonal + n) / n**2).item(), rel=1e-5
    )


def test_the_mmd_needs_two_codes_and_one_size_of_code():
    with pytest.raises(ValueError, match="at least 2 codes"):
        mmd_imq(torch.zeros(1, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="codes of 3 values against prior draws of 2"):
        mmd_imq(torch.zeros(2, 3), torch.zeros(2, 2))
    # In a model's loss a batch of one code (the last of an epoch, say) has no pairs: 0.
    terms = penalty_terms(
        LossSettings(mmd_weight=1.0),
        torch.ones(1, 3),
        torch.rand(1, 1, 2, 2),
        decoder=torch.nn.Linear(3, 4),
        decode=torch.sigmoid,
        training=True,
    )
    assert terms == {"mmd": torch.tensor(0.0)}


def test_the_mmd_gradient_pulls_the_codes_towards_the_prior():
    codes = (torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) + 3.0).requires_grad_()
    prior = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    mmd_imq(codes, prior).backward()
    # Gradient descent moves the codes' mean back towards 0.
    assert (codes.grad.mean(dim=0) > 0).all()


# ---------------------------------------------------------------------------------------- RAE


def test_the_latent_norm_and_the_decoder_l2_by_hand():
    z = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert latent_norm(z).item() == 0.5 * (25 + 1) / 2
    assert latent_norm(z.reshape(2, 1, 2)).item() == 6.5  # per code, flattened
    decoder = torch.nn.Linear(2, 2)
    with torch.no_grad():
        decoder.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        decoder.bias.copy_(torch.tensor([1.0, -1.0]))
    assert decoder_l2(decoder).item() == 1 + 4 + 9 + 16 + 1 + 1
    decoder_l2(decoder).backward()
    # d‖θ‖²/dθ = 2θ: Adam's weight decay of 2λ on the decoder.
    assert torch.equal(decoder.weight.grad, 2 * decoder.weight.detach())


def test_the_gradient_penalty_of_a_linear_decoder_is_its_column_sums_squared():
    weight = torch.tensor(
        [[1.0, -2.0, 0.5], [3.0, 1.0, 0.0], [0.0, 2.0, -1.0], [1.0, 1.0, 1.0]], requires_grad=True
    )

    def decode(z: torch.Tensor) -> torch.Tensor:  # (B, 3) → (B, 1, 2, 2)
        return (z @ weight.T + 1.0).reshape(-1, 1, 2, 2)

    z = torch.randn(5, 3)
    # ∇_z Σ_pixels (W z + b) = Wᵀ 1 for every code: (5, 2, 0.5), squared norm 25 + 4 + 0.25.
    penalty = decoder_gradient_penalty(decode, z)
    assert penalty.item() == pytest.approx(29.25)
    # The penalty is differentiable in the decoder: d/dW ‖Wᵀ1‖² = 2 (Wᵀ1) in every row.
    penalty.backward()
    torch.testing.assert_close(weight.grad, 2 * weight.detach().sum(0).expand(4, 3))


def test_the_gradient_penalty_equals_autograds_jacobian_and_reuses_the_forward_graph():
    torch.manual_seed(0)
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4))

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(decoder(z))

    z = torch.randn(4, 3)
    by_jacobian = torch.stack(
        [torch.autograd.functional.jacobian(decode, code).sum(0).square().sum() for code in z]
    )
    assert decoder_gradient_penalty(decode, z).item() == pytest.approx(
        by_jacobian.mean().item(), rel=1e-5
    )
    # Given the images a forward pass made from z (in its graph), the same number without a
    # second decode.
    encoded = (z * 1.0).requires_grad_()
    images = decode(encoded)
    calls = []
    assert decoder_gradient_penalty(
        lambda _z: calls.append(1), encoded, images
    ).item() == pytest.approx(by_jacobian.mean().item(), rel=1e-5)
    assert not calls
    # Under no_grad (a validation pass) it decodes again and gives a plain number.
    with torch.no_grad():
        again = decoder_gradient_penalty(decode, z)
    assert not again.requires_grad and again.item() == pytest.approx(
        by_jacobian.mean().item(), rel=1e-5
    )


def test_the_weighted_penalty_is_the_weights_times_the_terms():
    settings = LossSettings(
        mmd_weight=10.0, latent_norm_weight=0.5, decoder_reg="l2", decoder_reg_weight=2.0
    )
    terms = {
        "mmd": torch.tensor(0.25),
        "latent_norm": torch.tensor(4.0),
        "decoder_reg": torch.tensor(3.0),
    }
    assert weighted_penalty(settings, terms).item() == 10 * 0.25 + 0.5 * 4 + 2 * 3
    assert weighted_penalty(settings, {"latent_norm": torch.tensor(4.0)}).item() == 2.0


# ---------------------------------------------------------------------------------------- models


def test_the_plain_ae_is_built_and_scored_as_before():
    raw, trainable, weights = DEFAULTS["ae_z16"]
    off = {
        **raw,
        "mmd_weight": 0.0,
        "latent_norm_weight": 0.0,
        "decoder_reg": "none",
        "decoder_reg_weight": 1.0,
    }
    x = torch.rand(3, 1, 32, 32)
    for entry in (raw, off):
        model = make(entry, 32, 1)
        assert count_params(model).trainable == trainable and digest(model) == weights
        terms = model.train().loss(x, model(x))
        assert set(terms) == {"recon", "loss"} and torch.equal(terms["loss"], terms["recon"])
    # Turning a penalty on adds no parameter and draws no random number when the model is built.
    for penalty in (
        {"mmd_weight": 100.0},
        {"latent_norm_weight": 1.0, "decoder_reg": "gp"},
        {"latent_norm_weight": 1.0, "decoder_reg": "l2"},
    ):
        assert digest(make({**raw, **penalty}, 32, 1)) == weights


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (WAE, {"mmd"}),
        (RAE_GP, {"latent_norm", "decoder_reg"}),
        (RAE_L2, {"latent_norm", "decoder_reg"}),
    ],
)
def test_a_penalised_loss_names_its_terms_and_adds_them_weighted(raw, names):
    model = make(raw).eval()
    x = torch.rand(4, 1, 16, 16)
    outputs = model(x)
    terms = model.loss(x, outputs)
    assert set(terms) == {"recon", "loss"} | names
    weights = {"mmd": 10.0, "latent_norm": 0.5, "decoder_reg": raw.get("decoder_reg_weight")}
    expected = terms["recon"] + sum(weights[name] * terms[name] for name in names)
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    if "latent_norm" in names:
        assert terms["latent_norm"].item() == pytest.approx(
            0.5 * outputs["z"].square().sum(1).mean().item(), rel=1e-6
        )
    if raw.get("decoder_reg") == "l2":
        assert terms["decoder_reg"].item() == pytest.approx(
            sum(p.square().sum().item() for p in model.decoder.parameters()), rel=1e-5
        )
    if raw.get("decoder_reg") == "gp":
        assert terms["decoder_reg"].item() == pytest.approx(
            decoder_gradient_penalty(model.decode, outputs["z"]).item(), rel=1e-6
        )
    # Every parameter gets a gradient from the penalised loss.
    model.train()
    model.loss(x, model(x))["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_mmd_draws_from_the_prior_fresh_in_training_and_fixed_in_evaluation():
    model = make(WAE)
    x = torch.rand(4, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
        first, second = model.loss(x, outputs)["mmd"], model.loss(x, outputs)["mmd"]
    assert first.item() == second.item()  # a validation loss is a function of the batch
    state = torch.get_rng_state()
    with torch.no_grad():
        model.loss(x, outputs)
    assert torch.equal(torch.get_rng_state(), state)  # and takes nothing from the training's stream
    model.train()
    outputs = model(x)
    assert model.loss(x, outputs)["mmd"].item() != model.loss(x, outputs)["mmd"].item()
    torch.manual_seed(5)
    drawn = model.loss(x, outputs)["mmd"]
    torch.manual_seed(5)
    prior = torch.randn(4, 3)
    assert drawn.item() == pytest.approx(mmd_imq(outputs["z"], prior).item(), rel=1e-6)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"arch": "vae_conv", "mmd_weight": 10.0},
            "models.v: mmd_weight: a deterministic autoencoder's penalty (WAE-MMD, RAE), "
            "while a VAE has its KL term; remove it or set variational: false",
        ),
        (
            {"arch": "vae_conv", "latent_norm_weight": 1.0, "decoder_reg": "gp"},
            "models.v: latent_norm_weight, decoder_reg: a deterministic autoencoder's penalty",
        ),
        (
            {**TINY_AE, "decoder_reg_weight": 0.1},
            "models.v: decoder_reg_weight would do nothing with decoder_reg: none; "
            "remove it or set decoder_reg: l2 or gp",
        ),
        (
            {**TINY_AE, "decoder_reg": "sn"},
            "models.v.decoder_reg: 'sn' is not allowed: Input should be 'none', 'l2' or 'gp'",
        ),
        (
            {**TINY_AE, "mmd_weight": -1.0},
            "models.v.mmd_weight: -1.0 is not allowed: Input should be greater than or equal to 0",
        ),
        ({**TINY_AE, "decoder_reg": "l2", "decoder_reg_weight": 0}, "models.v.decoder_reg_weight"),
        ({"arch": "ae_conv", "mmd_weight": 1.0}, "models.v.mmd_weight: unknown key"),
        (
            {"arch": "vae_mlp", "latent_norm_weight": 1.0},
            "models.v.latent_norm_weight: unknown key",
        ),
    ],
)
def test_a_misplaced_penalty_is_one_message_naming_the_key(entry, expected):
    with pytest.raises(UserError) as info:
        params_from_dict({"models": {"v": entry}})
    assert expected in str(info.value) and "problems" not in str(info.value)


def test_wae_and_rae_entries_are_one_knob_families_with_the_ae():
    from vaelab.compare.families import find_families

    params = params_from_dict(
        {
            "models": {
                "ae_z16": AE,
                "wae_mmd10": {**AE, "mmd_weight": 10.0},
                "wae_mmd": {**AE, "mmd_weight": 100.0},
                "rae": {**AE, "latent_norm_weight": 1.0, "decoder_reg": "gp"},
                "rae_l2": {**AE, "latent_norm_weight": 1.0, "decoder_reg": "l2"},
            }
        }
    )
    families = {(f.knob, f.variants) for f in find_families(params.models)}
    assert families == {
        ("mmd_weight", ("ae_z16", "wae_mmd10", "wae_mmd")),
        ("decoder_reg", ("rae", "rae_l2")),
    }


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize(
    "raw", [WAE, RAE_GP, RAE_L2, {**RAE_GP, "trunk": "resnet", "batch_norm": "all"}]
)
def test_a_penalised_ae_trains_saves_and_loads_back(tmp_path, image_size, channels, raw):
    fitted = fit(raw, image_size, channels, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
    row = fitted.result.history[-1]
    names = {"mmd"} if "mmd_weight" in raw else {"latent_norm", "decoder_reg"}
    assert {f"{split}_{name}" for split in ("train", "val") for name in names} <= set(row)
    assert all(row[f"val_{name}"] >= 0 for name in names if name != "mmd")
