"""FID and KID (vaelab.evaluate.fid): the Fréchet distance and the unbiased KID estimator against
known answers on Gaussians, the plumbing with a small network as the feature extractor, and
the Inception weights file: never downloaded, recorded as not measured (with the exact place
to put it) when missing, refused when its checksum is wrong."""

from __future__ import annotations

import math
import os
import socket
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

from tests.support.features import SmallFeatures
from tests.support.fit import SHAPES, fit
from tests.test_eval import IdentityCode
from vaelab.config import load_params, params_from_dict
from vaelab.config.evaluate_config import EvaluateConfig, InceptionConfig
from vaelab.data.prepared_data import PreparedData
from vaelab.errors import USER_ERROR_EXIT, UserError, exit_on_user_error
from vaelab.evaluate import fid
from vaelab.evaluate.context import Context
from vaelab.evaluate.evaluate import HEADLINE
from vaelab.io.hashing import sha256sum
from vaelab.io.metric_files import headline_of
from vaelab.models import build_model

REPO = Path(__file__).resolve().parents[1]
# The machine's own hub cache, read when the tests are collected (each test gets an empty one:
# conftest), for the one test that runs the real Inception-v3 where its weights are installed.
MACHINE_CHECKPOINTS = fid.hub_checkpoints()
# KID kept trivial where a test is about the FID.
FID_ONLY = InceptionConfig(kid_subsets=1, kid_subset_size=2)
TINY_VAE = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 3}


# --- the Fréchet distance -------------------------------------------------------------------------

MU1, VAR1 = (
    torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64),
    torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64),
)
MU2, VAR2 = (
    torch.tensor([1.0, 1.0, 0.0, 3.0], dtype=torch.float64),
    torch.tensor([2.0, 1.0, 0.5, 4.0], dtype=torch.float64),
)


def closed_form(mu1, var1, mu2, var2) -> float:
    """The Fréchet distance of N(mu1, diag var1) and N(mu2, diag var2):
    ||mu1 - mu2||² + Σ (s1 + s2 - 2 √(s1 s2))."""
    return float((mu1 - mu2).square().sum() + (var1 + var2 - 2 * (var1 * var2).sqrt()).sum())


def with_moments(mean, var, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` Gaussian rows whitened and rescaled so that their sample mean is ``mean`` and their
    sample covariance (ddof 1, as torchmetrics') is diag(``var``), to float64 rounding."""
    draw = torch.randn(n, len(mean), generator=generator, dtype=torch.float64)
    draw -= draw.mean(dim=0)
    white = draw @ torch.linalg.inv(torch.linalg.cholesky(draw.T @ draw / (n - 1))).T
    return mean + white * var.sqrt()


def rotation(d: int, generator: torch.Generator) -> torch.Tensor:
    q, _r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q


@pytest.mark.parametrize("rotated", [False, True])
def test_the_frechet_distance_of_sets_with_given_moments_is_the_closed_form(rotated):
    # The sets' own mean and covariance are the Gaussians' (with_moments), so torchmetrics'
    # FID must give the closed form up to float64 rounding: its sums over 500 rows and the
    # eigenvalues of a 4x4 product lose a few digits of 16, hence 1e-9. Rotating both sets
    # by one orthogonal matrix makes the covariances full (not diagonal) and keeps the distance.
    generator = torch.Generator().manual_seed(0)
    real, fake = with_moments(MU1, VAR1, 500, generator), with_moments(MU2, VAR2, 700, generator)
    if rotated:
        q = rotation(4, generator)
        real, fake = real @ q, fake @ q
    expected = closed_form(MU1, VAR1, MU2, VAR2)
    assert expected == pytest.approx(6.343145750507619)  # 5 + 2 (3 - 2√2) + 0 + (5 - 4)
    assert fid.distances(real, fake, FID_ONLY, seed=0)["fid"] == pytest.approx(expected, rel=1e-9)


def test_the_frechet_distance_of_sampled_gaussians_is_within_its_sampling_error():
    # Plain draws: the estimate is off by its sampling error. By the delta method its sd is
    # √(4 Δμᵀ(Σ1 + Σ2)Δμ / n + Σ_i (1 - √(s2/s1))² 2 s1²/n + (1 - √(s1/s2))² 2 s2²/n) ≈ 0.045 at
    # n = 20,000 (the mean and the covariance terms), its bias tr(Σ1 + Σ2)/n; 5 sd plus the bias
    # bounds the error. The wrong distance (e.g. without the -2√(s1 s2)) is off by far more.
    n = 20_000
    generator = torch.Generator().manual_seed(1)
    real = MU1 + VAR1.sqrt() * torch.randn(n, 4, generator=generator, dtype=torch.float64)
    fake = MU2 + VAR2.sqrt() * torch.randn(n, 4, generator=generator, dtype=torch.float64)
    delta = MU1 - MU2
    mean_term = 4 * float((delta.square() * (VAR1 + VAR2)).sum()) / n
    cov_term = (
        float(
            (
                (1 - (VAR2 / VAR1).sqrt()).square() * 2 * VAR1.square()
                + (1 - (VAR1 / VAR2).sqrt()).square() * 2 * VAR2.square()
            ).sum()
        )
        / n
    )
    sd, bias = math.sqrt(mean_term + cov_term), float((VAR1 + VAR2).sum()) / n
    assert 0.04 < sd < 0.05
    expected = closed_form(MU1, VAR1, MU2, VAR2)
    assert abs(fid.distances(real, fake, FID_ONLY, seed=0)["fid"] - expected) < 5 * sd + bias


# --- the kernel Inception distance ----------------------------------------------------------------


def mmd2_unbiased(x: list[list[float]], y: list[list[float]]) -> float:
    """The unbiased MMD² U-statistic of two sets of m points under k(a, b) = (a·b / d + 1)³,
    by hand: the mean of k over pairs i ≠ j within each set, less twice the mean over all
    cross pairs."""
    m, d = len(x), len(x[0])

    def k(a: list[float], b: list[float]) -> float:
        return (sum(p * q for p, q in zip(a, b, strict=True)) / d + 1.0) ** 3

    within = sum(k(s[i], s[j]) for s in (x, y) for i in range(m) for j in range(m) if i != j) / (
        m * (m - 1)
    )
    across = sum(k(a, b) for a in x for b in y) / (m * m)
    return within - 2 * across


def test_kid_is_the_unbiased_mmd2_u_statistic_computed_by_hand():
    # Subsets of all m points: every subset is the whole set, so each gives the U-statistic
    # (summed in another order: equal to rounding) and their sd over subsets is ~0.
    generator = torch.Generator().manual_seed(2)
    real = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    fake = 2.0 + torch.randn(6, 3, generator=generator, dtype=torch.float64)
    got = fid.distances(real, fake, InceptionConfig(kid_subsets=5, kid_subset_size=6), seed=0)
    expected = mmd2_unbiased(real.tolist(), fake.tolist())
    assert expected > 0
    assert got["kid"] == pytest.approx(expected, rel=1e-12)
    assert got["kid_subsets_sd"] == pytest.approx(0.0, abs=1e-12)


def cubic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel matrix, (a·b / d + 1)³."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def test_kid_of_two_draws_of_one_gaussian_is_zero_in_expectation():
    # 40 independent pairs of draws of N(0, I): the unbiased estimates average to 0 within 3
    # standard errors, while the biased V-statistic (the diagonal k(x, x) kept) sits far above 0.
    estimates, biased = [], []
    settings = InceptionConfig(kid_subsets=1, kid_subset_size=50)
    generator = torch.Generator().manual_seed(3)
    for pair in range(40):
        real, fake = (
            torch.randn(50, 16, generator=generator, dtype=torch.float64) for _ in range(2)
        )
        estimates.append(fid.distances(real, fake, settings, seed=pair)["kid"])
        biased.append(
            float(
                cubic(real, real).mean() + cubic(fake, fake).mean() - 2 * cubic(real, fake).mean()
            )
        )
    standard_error = np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 3 * standard_error
    assert np.mean(biased) > 20 * standard_error


def test_kid_subsets_are_capped_at_the_smaller_set_and_seeded():
    generator = torch.Generator().manual_seed(4)
    real, fake = torch.randn(10, 5, generator=generator), torch.randn(30, 5, generator=generator)
    settings = InceptionConfig(kid_subsets=20)  # kid_subset_size 1000: more than either set holds
    assert fid.kid_subset_size(settings, len(real), len(fake)) == 10
    first = fid.distances(real, fake, settings, seed=7)
    state = torch.get_rng_state()
    assert fid.distances(real, fake, settings, seed=7) == first  # the subsets come from the seed
    assert torch.equal(torch.get_rng_state(), state)  # and torch's own generator is left as it was
    assert fid.distances(real, fake, settings, seed=8)["kid"] != first["kid"]


# --- the images the extractor is given ------------------------------------------------------------


def test_inception_input_is_uint8_rgb_rounded_to_the_nearest_level():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    grey = fid.as_inception_input(levels.float() / 255.0)
    assert grey.dtype == torch.uint8 and grey.shape == (1, 3, 16, 16)
    assert all(
        torch.equal(grey[:, c : c + 1], levels) for c in range(3)
    )  # every level back exactly, in each channel
    rgb = torch.rand(2, 4, 4, 3).permute(0, 3, 1, 2)  # channels-last, as test images arrive
    assert torch.equal(fid.as_inception_input(rgb), (rgb * 255).round().to(torch.uint8))
    assert fid.as_inception_input(rgb).is_contiguous() and grey.is_contiguous()
    edges = torch.tensor([-0.5, 10.49 / 255, 10.51 / 255, 1.5]).reshape(1, 1, 2, 2)
    assert fid.as_inception_input(edges)[0, 0].flatten().tolist() == [0, 10, 11, 255]


# --- the plumbing, with a small network as the feature extractor ----------------------------------


def contexts_of(
    models: list, test: np.ndarray, *, samples: int = 12, batch_size: int = 5
) -> list[Context]:
    """One Context per model (replicates 0, 1, ...) on ``test``, evaluated as evaluate would."""
    settings = EvaluateConfig(samples=samples, batch_size=batch_size, inception={"kid_subsets": 10})
    data = PreparedData(test, pd.DataFrame({"split": ["test"] * len(test)}))
    return [
        Context(
            model=model.eval(),
            variant="v",
            data=data,
            test=test,
            settings=settings,
            seed=0,
            replicate=seed,
            draw=False,
        )
        for seed, model in enumerate(models)
    ]


def uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` in [0, 1] → uint8 RGB, written out here rather than taken from vaelab."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.repeat(1, 3 // pixels.shape[1], 1, 1)


def features_by_hand(network: SmallFeatures, images: torch.Tensor) -> torch.Tensor:
    """The network's features of ``images`` in [0, 1], in the pieces measure() was made to run it
    on (batches of 5, each two at a time): a lone image may take other kernels than a pair."""
    return torch.cat(
        [network(uint8_rgb(piece)) for batch in images.split(5) for piece in batch.split(2)]
    )


def frechet_by_hand(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID from numpy's covariances and scipy's matrix square root."""
    a, b = a.double().numpy(), b.double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.square(a.mean(0) - b.mean(0)).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
def test_fid_and_kid_plumbing_with_a_small_network_as_the_feature_extractor(
    tmp_path, monkeypatch, image_size, channels
):
    """Plumbing only, not Inception's numbers: a small conv net (SmallFeatures) stands in for
    Inception-v3. A trained, saved and loaded tiny VAE and an untrained one are the two
    replicates; what reaches the network, in what pieces, and the FID and KID of its features
    (the test split against each replicate's samples and reconstructions) are checked."""
    fitted = fit(TINY_VAE, image_size, channels, tmp_path / "fitted")
    torch.manual_seed(1)
    untrained = build_model(
        params_from_dict({"models": {"v": TINY_VAE}}).models["v"],
        image_size=image_size,
        channels=channels,
    )
    test = np.random.default_rng(5).integers(
        0, 256, (9, image_size, image_size, channels), dtype=np.uint8
    )
    contexts = contexts_of([fitted.loaded, untrained], test)
    monkeypatch.setattr(fid, "INCEPTION_BATCH", 2)
    network = SmallFeatures()
    quality = fid.measure(contexts, network)

    # Every call got uint8 RGB pieces of at most INCEPTION_BATCH images; the test split went
    # through once, first, as its own pixels; then each replicate's 12 samples and 9
    # reconstructions.
    assert all(
        x.dtype == torch.uint8 and x.shape[1:] == (3, image_size, image_size) and len(x) <= 2
        for x in network.inputs
    )
    seen = torch.cat(network.inputs)
    assert len(seen) == 9 + 2 * (12 + 9)
    assert torch.equal(
        seen[:9], torch.from_numpy(test).permute(0, 3, 1, 2).repeat(1, 3 // channels, 1, 1)
    )

    record = quality.record
    assert record["measured"] is True and record["note"] == fid.BIAS
    assert record["images"] == {"test": 9, "sample": 12, "recon": 9}
    assert record["kid_subsets"] == 10 and record["kid_subset_size"] == {"sample": 9, "recon": 9}
    inputs = torch.from_numpy(test).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        test_features = features_by_hand(network, inputs)
        per_replicate = [
            {
                "sample": features_by_hand(network, ctx.samples),
                "recon": features_by_hand(
                    network, torch.cat([ctx.model(x)["recon"] for x in inputs.split(5)])
                ),
            }
            for ctx in contexts
        ]  # reconstructed in evaluate.batch_size batches, as measured
    for source in fid.MEASURED:
        values = [frechet_by_hand(test_features, features[source]) for features in per_replicate]
        assert record["fid"][source] == pytest.approx(np.mean(values), rel=1e-6)
        assert quality.sd[fid.RECORD]["fid"][source] == pytest.approx(
            np.std(values, ddof=1), rel=1e-5
        )
    # Reconstructions: subsets of all 9 images, so KID is the hand U-statistic, per replicate.
    kids = [
        mmd2_unbiased(test_features.double().tolist(), features["recon"].double().tolist())
        for features in per_replicate
    ]
    assert record["kid"]["recon"] == pytest.approx(np.mean(kids), rel=1e-9)
    assert all(math.isfinite(record[name]["sample"]) for name in ("kid", "kid_subsets_sd"))
    assert set(quality.sd[fid.RECORD]) == {"fid", "kid", "kid_subsets_sd"}


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
def test_reconstructions_equal_to_their_inputs_are_at_fid_zero(image_size, channels):
    """Plumbing only (SmallFeatures, not Inception): a model that copies its input gives the
    test split's own features for its reconstructions, so their FID is 0 and its samples' is not."""
    test = np.random.default_rng(6).integers(
        0, 256, (10, image_size, image_size, channels), dtype=np.uint8
    )
    record = fid.measure(
        contexts_of([IdentityCode(image_size, channels)], test, samples=10), SmallFeatures()
    ).record
    assert record["fid"]["recon"] == pytest.approx(0.0, abs=1e-9)
    assert record["fid"]["sample"] > 1e-3


# --- params ---------------------------------------------------------------------------------------


def test_the_repository_params_spell_out_the_defaults():
    assert load_params(REPO / "params.yaml").evaluate.inception == InceptionConfig()
    assert InceptionConfig().weights is None and InceptionConfig().enabled


@pytest.mark.parametrize(
    ("inception", "expected"),
    [
        (
            {"weights": ""},
            ["evaluate.inception.weights", "is no file name", "null for torch's hub cache"],
        ),
        (
            {"weights": "checkpoints/"},
            ["evaluate.inception.weights", "name the weights file itself"],
        ),
        (
            {"kid_subset_size": 1},
            ["evaluate.inception.kid_subset_size", "greater than or equal to 2"],
        ),
        (
            {"weigths": None},
            ["evaluate.inception.weigths", "Did you mean 'evaluate.inception.weights'?"],
        ),
    ],
)
def test_bad_inception_settings_are_one_clear_message(make_params, inception, expected):
    with pytest.raises(UserError) as info:
        make_params({"evaluate": {"inception": inception}})
    for fragment in expected:
        assert fragment in str(info.value)


# --- the weights file ----------------------------------------------------------------------------


def hub_file(name: str = fid.WEIGHTS_FILE) -> Path:
    """Where a file of that name lies in the test's own hub cache (TORCH_HOME: conftest)."""
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / name


def save_state(path: Path, value: float = 1.0) -> str:
    """A small state dict of tensors at ``path``; its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.full((3,), value)}, path)
    return sha256sum(path)


def test_a_missing_file_is_not_measured_with_the_exact_place_to_put_it(tmp_path, monkeypatch):
    found = fid.resolve(InceptionConfig())
    assert isinstance(found, fid.NotMeasured)
    place = hub_file()
    record = found.record()
    assert record["measured"] is False and record["put the file at"] == str(place)
    assert (
        f"no Inception weights file at {place} or "
        f"{hub_file('weights-inception-2015-12-05-6726825d.pth')}" in record["reason"]
    )
    assert fid.DOWNLOADS[0] in record["reason"] and "never downloaded" in record["reason"]
    # Nothing measured: no number in the record, no sd, nothing for the headline.
    quality = fid.sample_quality(found, [])
    assert quality.record == record and quality.sd == {}
    assert headline_of({fid.RECORD: quality.record}, HEADLINE) == {}
    # A file named in params: that path, as written (relative to the project root).
    monkeypatch.chdir(tmp_path)
    named = fid.resolve(InceptionConfig(weights="weights/inception.pth"))
    assert named.record()["put the file at"] == "weights/inception.pth"
    assert fid.resolve(InceptionConfig(enabled=False)).record() == {
        "measured": False,
        "reason": "evaluate.inception.enabled is false",
    }
    # The default hub cache, under the home folder: written from there, the same for every user.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert fid.hub_checkpoints() == tmp_path / ".cache" / "torch" / "hub" / "checkpoints"
    record = fid.resolve(InceptionConfig()).record()
    assert (
        record["put the file at"]
        == "~/.cache/torch/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
    )
    assert (
        "put it at ~/.cache/torch/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
        in record["reason"]
    )


def test_a_file_with_another_checksum_is_refused_with_exit_status_2():
    place = hub_file()
    digest = save_state(place)
    assert not digest.startswith(fid.SHA256_PREFIX)
    with pytest.raises(UserError) as info:
        fid.resolve(InceptionConfig())
    assert str(info.value).startswith(
        f"{place}: SHA-256 {digest[:16]}... does not start with 6726825d"
    )
    assert "evaluate.inception.enabled: false" in str(info.value)
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(fid.resolve)(InceptionConfig())
    assert exited.value.code == USER_ERROR_EXIT


class Payload:
    """Not a tensor: a pickle holding it can run code when loaded without weights_only."""


def test_a_file_with_the_checksum_is_found_by_either_name_and_must_hold_tensors_only(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(fid, "backend_problem", lambda: None)
    theirs = hub_file("weights-inception-2015-12-05-6726825d.pth")
    digest = save_state(theirs)
    monkeypatch.setattr(fid, "SHA256_PREFIX", digest[:8])
    assert fid.resolve(InceptionConfig()) == fid.Weights(
        theirs, digest
    )  # torch-fidelity's own download's name
    ours = hub_file()
    ours.write_bytes(theirs.read_bytes())
    assert fid.resolve(InceptionConfig()) == fid.Weights(ours, digest)  # WEIGHTS_FILE first
    named = tmp_path / "elsewhere.pth"
    named.write_bytes(theirs.read_bytes())
    assert fid.resolve(InceptionConfig(weights=str(named))) == fid.Weights(named, digest)
    torch.save({"w": Payload()}, named)
    monkeypatch.setattr(fid, "SHA256_PREFIX", sha256sum(named)[:8])
    with pytest.raises(UserError, match="not a plain state dict of tensors"):
        fid.resolve(InceptionConfig(weights=str(named)))


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Every way out of the machine raises and is recorded: sockets, urllib and torch.hub's
    downloads."""
    calls: list[str] = []

    def refuse(name: str):
        def refused(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"network access attempted: {name}")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urllib.request.urlopen"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse("torch.hub.download_url_to_file"))
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", refuse("torch.hub.load_state_dict_from_url")
    )
    return calls


def test_the_resolver_never_opens_a_connection(no_network, monkeypatch):
    assert isinstance(
        fid.resolve(InceptionConfig()), fid.NotMeasured
    )  # no file: no download either
    digest = save_state(hub_file())
    monkeypatch.setattr(fid, "SHA256_PREFIX", digest[:8])
    found = fid.resolve(
        InceptionConfig()
    )  # the file is there; torch-fidelity imported if installed
    assert found == fid.Weights(hub_file(), digest) or "put the file at" not in found.record()
    assert no_network == []


def test_without_torch_fidelity_the_reason_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed
    assert (
        "torch-fidelity (the Inception-v3 of the FID) is not installed: "
        "pip install -c constraints.txt -e '.[fid]'" in fid.backend_problem()
    )
    # Installed beside a torchvision built for another torch: importing it fails with RuntimeError.
    monkeypatch.delitem(sys.modules, "torch_fidelity")
    fake = tmp_path / "torch_fidelity"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = fid.backend_problem()
    assert (
        "RuntimeError: operator torchvision::nms does not exist" in problem
        and torch.__version__ in problem
    )
    # With the file there but no backend, the reason is the backend's and no place is named.
    digest = save_state(hub_file())
    monkeypatch.setattr(fid, "SHA256_PREFIX", digest[:8])
    assert fid.resolve(InceptionConfig()).record() == {"measured": False, "reason": problem}


def _machine_weights() -> Path | None:
    found = [
        MACHINE_CHECKPOINTS / name
        for name in fid.HUB_NAMES
        if (MACHINE_CHECKPOINTS / name).is_file()
    ]
    return found[0] if found else None


@pytest.mark.skipif(
    _machine_weights() is None or fid.backend_problem() is not None,
    reason=(
        f"needs {fid.WEIGHTS_FILE} in torch's hub cache ({MACHINE_CHECKPOINTS}) and torch-fidelity"
    ),
)
def test_the_real_inception_gives_pool_features_offline(no_network):
    found = fid.resolve(InceptionConfig(weights=str(_machine_weights())))
    assert isinstance(found, fid.Weights) and found.sha256.startswith(fid.SHA256_PREFIX)
    network = fid.inception(found, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    noise, flat = torch.rand(8, 1, 16, 16, generator=generator), torch.full((8, 1, 16, 16), 0.5)
    features = {
        name: fid.extract(network, [images], device=torch.device("cpu"), count=8, what=name)
        for name, images in (("noise", noise), ("flat", flat))
    }
    assert (
        features["noise"].shape == (8, fid.FEATURES) and (features["noise"] >= 0).all()
    )  # after a ReLU and pool
    same = fid.distances(features["noise"], features["noise"], FID_ONLY, seed=0)["fid"]
    other = fid.distances(features["noise"], features["flat"], FID_ONLY, seed=0)["fid"]
    assert abs(same) < 1e-3 * other
    assert no_network == []
