"""The ex-post GMM (Ghosh et al. 2020): fitted to codes it recovers their clusters, it is saved
with the model as plain tensors (bit for bit, deterministically), sampled with torch alone, and
the train stage fits one per replicate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.fit import fit
from vaelab.config import params_from_dict
from vaelab.errors import UserError
from vaelab.models.latent_gmm import LatentGMM, fit_latent_gmm, sample_images
from vaelab.models.saved import GMM_FILE, gmm_file, load_gmm, load_trained, save_trained

REPO = Path(__file__).resolve().parents[1]
CENTRES = np.array([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
TINY_AE = {"arch": "vae_conv", "filters": [4, 8], "z_dim": 2, "variational": False}


def clusters(per_cluster: int = 200, seed: int = 0) -> np.ndarray:
    """Three round clusters of sd 0.5 in the plane, 1 : 2 : 1 in size."""
    rng = np.random.default_rng(seed)
    counts = [per_cluster, 2 * per_cluster, per_cluster]
    return np.concatenate(
        [
            centre + 0.5 * rng.standard_normal((count, 2))
            for centre, count in zip(CENTRES, counts, strict=True)
        ]
    )


def test_a_gmm_fitted_to_separated_clusters_recovers_them():
    gmm = fit_latent_gmm(clusters(), components=3, seed=0)
    assert gmm.components == 3 and gmm.dim == 2
    order = torch.argsort(gmm.means[:, 0] + 0.1 * gmm.means[:, 1])
    torch.testing.assert_close(gmm.means[order], torch.from_numpy(CENTRES), atol=0.15, rtol=0)
    torch.testing.assert_close(
        gmm.weights[order], torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(
        gmm.covariances[order],
        0.25 * torch.eye(2, dtype=torch.float64).expand(3, 2, 2),
        atol=0.06,
        rtol=0,
    )
    assert all(t.dtype == torch.float64 for t in gmm.state_dict().values())


def test_fitting_is_deterministic_and_seeded():
    codes = clusters(50)
    first, second = fit_latent_gmm(codes, 5, seed=3), fit_latent_gmm(codes, 5, seed=3)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    other = fit_latent_gmm(codes, 5, seed=4)
    assert not torch.equal(first.means, other.means)


def test_fewer_codes_than_components_fit_one_component_per_code():
    gmm = fit_latent_gmm(clusters(1), components=10, seed=0)
    assert gmm.components == 4
    with pytest.raises(ValueError, match="N >= 2"):
        fit_latent_gmm(np.zeros((1, 3)), 10, seed=0)
    with pytest.raises(ValueError, match="not all finite"):
        fit_latent_gmm(np.array([[0.0, np.nan], [1.0, 1.0]]), 2, seed=0)


def test_draws_are_seeded_and_follow_the_mixture():
    gmm = LatentGMM(
        weights=torch.tensor([0.25, 0.75], dtype=torch.float64),
        means=torch.tensor([[-5.0, 0.0], [5.0, 1.0]], dtype=torch.float64),
        covariances=torch.tensor(
            [[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.9], [0.9, 1.0]]], dtype=torch.float64
        ),
    )
    draws = gmm.sample(40_000, torch.Generator().manual_seed(0))
    assert draws.shape == (40_000, 2) and draws.dtype == torch.float64
    assert torch.equal(draws, gmm.sample(40_000, torch.Generator().manual_seed(0)))
    assert not torch.equal(draws, gmm.sample(40_000, torch.Generator().manual_seed(1)))
    right = draws[draws[:, 0] > 0]
    assert len(right) / len(draws) == pytest.approx(0.75, abs=0.01)
    torch.testing.assert_close(
        right.mean(0), torch.tensor([5.0, 1.0], dtype=torch.float64), atol=0.03, rtol=0
    )
    torch.testing.assert_close(torch.cov(right.T), gmm.covariances[1], atol=0.05, rtol=0)


@pytest.mark.parametrize(
    ("weights", "means", "covariances", "message"),
    [
        ([0.5, 0.5], [[0.0]], [[[1.0]]], "float64 weights"),
        ([0.5, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]], "sum to 1"),
        ([1.0], [[0.0, 1.0]], [[[1.0]]], "float64 weights"),
    ],
)
def test_a_malformed_mixture_is_refused(weights, means, covariances, message):
    with pytest.raises(ValueError, match=message):
        LatentGMM(*(torch.tensor(v, dtype=torch.float64) for v in (weights, means, covariances)))
    with pytest.raises(ValueError, match="float64 weights"):
        LatentGMM(torch.ones(1), torch.zeros(1, 1), torch.ones(1, 1, 1))  # float32


def test_the_gmm_is_saved_with_the_model_and_loaded_bit_for_bit(tmp_path):
    fitted = fit(TINY_AE, 16, 1, tmp_path / "trained")
    _model, config = load_trained(tmp_path / "trained" / "model")
    gmm = fit_latent_gmm(clusters(20), 3, seed=0)
    for folder in ("a", "b"):
        save_trained(tmp_path / folder, fitted.model, config, gmm)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "config.json",
        GMM_FILE,
        "model.pt",
    ]
    # Same tensors, same bytes (so the same DVC hash); loaded weights-only, float64, equal.
    assert gmm_file(tmp_path / "a").read_bytes() == gmm_file(tmp_path / "b").read_bytes()
    assert (tmp_path / "a" / "model.pt").read_bytes() == (
        tmp_path / "trained" / "model" / "model.pt"
    ).read_bytes()
    loaded = load_gmm(tmp_path / "a")
    for name, value in gmm.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # The weights-only loader refuses anything but tensors and plain containers.
    assert set(torch.load(gmm_file(tmp_path / "a"), weights_only=True)) == {
        "weights",
        "means",
        "covariances",
    }
    # A folder saved without one loads as ever, and has no GMM.
    assert load_gmm(tmp_path / "trained" / "model") is None
    model, _config = load_trained(tmp_path / "trained" / "model")
    images = sample_images(model, loaded, 5, torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 16, 16) and not images.requires_grad
    assert torch.equal(images, sample_images(model, loaded, 5, torch.Generator().manual_seed(0)))
    expected = model.decode(loaded.sample(5, torch.Generator().manual_seed(0)).float())
    torch.testing.assert_close(images, expected, rtol=0, atol=0)


def test_a_broken_or_foreign_gmm_file_is_a_user_error(tmp_path):
    fitted = fit(TINY_AE, 16, 1, tmp_path / "trained")
    _model, config = load_trained(tmp_path / "trained" / "model")
    save_trained(tmp_path / "m", fitted.model, config, fit_latent_gmm(clusters(20), 2, seed=0))
    torch.save({"weights": torch.ones(1, dtype=torch.float64)}, gmm_file(tmp_path / "m"))
    with pytest.raises(UserError, match=r"not a usable latent GMM .*weights, means, covariances"):
        load_gmm(tmp_path / "m")
    gmm_file(tmp_path / "m").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a usable latent GMM"):
        load_gmm(tmp_path / "m")
    with pytest.raises(ValueError, match="the GMM is over 3-value codes, the model's are 2"):
        sample_images(
            fitted.model, fit_latent_gmm(np.random.default_rng(0).normal(size=(9, 3)), 2, seed=0), 2
        )


def test_loading_and_sampling_need_no_scikit_learn(tmp_path):
    fitted = fit(TINY_AE, 16, 1, tmp_path / "trained")
    _model, config = load_trained(tmp_path / "trained" / "model")
    save_trained(tmp_path / "m", fitted.model, config, fit_latent_gmm(clusters(20), 2, seed=0))
    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from vaelab.models.saved import load_gmm, load_trained\n"
        "from vaelab.models.latent_gmm import sample_images\n"
        f"folder = Path({str(tmp_path / 'm')!r})\n"
        "model, _ = load_trained(folder)\n"
        "images = sample_images(model, load_gmm(folder), 3, torch.Generator().manual_seed(0))\n"
        "assert images.shape == (3, 1, 16, 16)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'threadpoolctl')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_train_config_knob_validates():
    params = params_from_dict({})
    assert params.train.gmm.components == 10 and params.train.gmm.max_dim == 512
    for bad, where in (
        ({"components": -1}, "train.gmm.components"),
        ({"max_dim": 0}, "train.gmm.max_dim"),
        ({"component": 3}, "train.gmm.component: unknown key"),
    ):
        with pytest.raises(UserError, match=where):
            params_from_dict({"train": {"gmm": bad}})
