"""`vaelab generate` and `vaelab reconstruct`: PNG grids from a folder or a registry URI, and
user errors."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.support.trained import (
    IMAGE_SIZE,
    save_variant,
    tiny_params,
    workspace_fixture,
    write_eval,
)
from vaelab.cli import main
from vaelab.config.data_config import CropConfig
from vaelab.data.imaging import ImageSpec, process_image
from vaelab.registry.generate import TILE_GAP, grid_shape
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

CELL = IMAGE_SIZE + TILE_GAP


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """PIL's (width, height) of a rows x cols grid of tiles."""
    return (cols * CELL + TILE_GAP, rows * CELL + TILE_GAP)


def tile(pixels: np.ndarray, row: int, col: int) -> np.ndarray:
    top, left = TILE_GAP + row * CELL, TILE_GAP + col * CELL
    return pixels[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]


@pytest.mark.parametrize(("n", "rows", "cols"), [(1, 1, 1), (10, 3, 4), (12, 3, 4)])
def test_grid_shape_is_as_square_as_possible(n, rows, cols):
    assert grid_shape(n) == (rows, cols)


@pytest.mark.parametrize(("n", "channels", "mode"), [(10, 1, "L"), (1, 1, "L"), (7, 3, "RGB")])
def test_generate_from_a_model_folder_writes_n_tiles(workspace, n, channels, mode):
    folder = save_variant(workspace.models, "vae", channels=channels)
    out = workspace.root / "samples.png"
    main(["generate", "--model", str(folder), "-n", str(n), "--seed", "3", "--out", str(out)])

    rows, cols = grid_shape(n)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.mode == mode and image.size == grid_size(rows, cols)
        pixels = np.asarray(image)
    cells = [tile(pixels, r, c) for r in range(rows) for c in range(cols)]
    # Samples of an untrained model are mid-grey; unused cells stay white.
    assert sum(not (cell == 255).all() for cell in cells) == n


def test_generate_from_the_champion_alias(workspace):
    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    run_register(tiny_params(), models_root=workspace.models, metrics_root=workspace.metrics)
    out = workspace.root / "out" / "samples.png"
    main(["generate", "--model", "models:/vaelab-vae@champion", "-n", "64", "--out", str(out)])
    with Image.open(out) as image:
        assert image.size == grid_size(8, 8)


def test_reconstruct_crops_like_prepare_and_puts_inputs_above_reconstructions(workspace):
    folder = save_variant(workspace.models, "vae")
    rng = np.random.default_rng(0)
    photo = workspace.root / "face.jpg"
    Image.fromarray(rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)).save(photo, quality=90)
    drawing = workspace.root / "face.png"
    Image.fromarray(rng.integers(0, 256, size=(20, 20), dtype=np.uint8)).save(drawing)
    out = workspace.root / "grid.png"
    main(["reconstruct", "--model", str(folder), str(photo), str(drawing), "--out", str(out)])

    with Image.open(out) as image:
        assert image.size == grid_size(2, 2)
        pixels = np.asarray(image)
    spec = ImageSpec(size=IMAGE_SIZE, channels=1, crop=CropConfig(method="center", size=None))
    np.testing.assert_array_equal(tile(pixels, 0, 0), process_image(photo, spec).pixels[..., 0])
    np.testing.assert_array_equal(tile(pixels, 0, 1), process_image(drawing, spec).pixels[..., 0])
    assert not np.array_equal(
        tile(pixels, 1, 0), tile(pixels, 0, 0)
    )  # a reconstruction, not a copy


@pytest.mark.parametrize(
    ("data", "resample"), [({"resample": "bilinear"}, "bilinear"), ({}, "lanczos")]
)
def test_images_are_resized_with_the_models_filter(tmp_path, data, resample):
    # A config.json from before data.resample existed means PIL's Lanczos, what prepare used then.
    from vaelab.models.saved import SavedConfig
    from vaelab.registry.generate import load_images

    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(30, 40), dtype=np.uint8)).save(
        photo
    )
    config = SavedConfig.model_validate(
        {
            "variant": "v",
            "model": {"arch": "ae_pool"},
            "image_size": 12,
            "channels": 1,
            "seed": 0,
            "train": {},
            "trainable_params": 0,
            "data": {"crop": {"method": "center"}, **data},
        }
    )
    spec = ImageSpec(size=12, channels=1, crop=CropConfig(method="center"), resample=resample)
    np.testing.assert_array_equal(
        load_images([photo], config)[0], process_image(photo, spec).pixels
    )
    other = ImageSpec(size=12, channels=1, crop=CropConfig(method="center"), resample="bicubic")
    assert not np.array_equal(load_images([photo], config)[0], process_image(photo, other).pixels)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown model", "--model models:/vaelab-nope@champion: cannot load it"),
        ("no such folder", "no such folder"),
        ("missing image", "missing.jpg: no such image file"),
        ("not an image", "notes.jpg: cannot use this image"),
        ("not png", "give a name ending in .png"),
        ("no gmm", "has no latent GMM to sample"),
        # Issue 26, item 2: -n 2000000 used 5 GB and died in the allocator.
        (
            "too many samples",
            "-n 2000000: more than registry.max_images (512) images in one command",
        ),
        ("too many images", "2 image files: more than registry.max_images (1) images"),
    ],
)
def test_user_errors_are_one_message_and_write_nothing(workspace, capsys, case, message):
    folder = save_variant(workspace.models, "vae")
    (workspace.root / "notes.jpg").write_text("not a JPEG at all")
    good = workspace.root / "good.png"
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(good)
    out = workspace.root / "grid.png"
    small_limit = workspace.root / "small.yaml"
    small_limit.write_text(
        yaml.safe_dump(tiny_params(registry={"max_images": 1}).model_dump(mode="json"))
    )
    argv = {
        "unknown model": ["generate", "--model", "models:/vaelab-nope@champion", "--out", str(out)],
        "no such folder": [
            "generate",
            "--model",
            str(workspace.root / "models" / "nope"),
            "--out",
            str(out),
        ],
        "missing image": [
            "reconstruct",
            "--model",
            str(folder),
            str(good),
            "missing.jpg",
            "--out",
            str(out),
        ],
        "not an image": ["reconstruct", "--model", str(folder), "notes.jpg", "--out", str(out)],
        "not png": ["generate", "--model", str(folder), "--out", str(workspace.root / "grid.jpg")],
        "no gmm": ["generate", "--model", str(folder), "--sampler", "gmm", "--out", str(out)],
        "too many samples": [
            "generate",
            "--model",
            str(folder),
            "-n",
            "2000000",
            "--out",
            str(out),
        ],
        "too many images": [
            "--params",
            str(small_limit),
            "reconstruct",
            "--model",
            str(folder),
            str(good),
            str(good),
            "--out",
            str(out),
        ],
    }[case]

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vaelab: error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not out.exists() and not (workspace.root / "grid.jpg").exists()


def test_a_registry_uri_without_a_registry_is_a_user_error(workspace, monkeypatch, capsys):
    missing = workspace.root / "elsewhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "generate",
                "--model",
                "models:/vaelab-vae@champion",
                "--out",
                str(workspace.root / "s.png"),
            ]
        )
    assert exit_info.value.code == 2
    assert f"there is no MLflow registry at sqlite:///{missing}" in capsys.readouterr().err
    assert not missing.exists()  # MLflow was not allowed to create an empty one


def test_generate_draws_from_the_latent_gmm_of_a_model_folder(workspace):
    import torch

    from vaelab.models.inference import to_numpy
    from vaelab.models.latent_gmm import LatentGMM, sample_images
    from vaelab.models.saved import load_trained, save_trained
    from vaelab.registry.pyfunc import VariantModel

    folder = save_variant(workspace.models, "vae")
    model, config = load_trained(folder / "seed0")
    without = VariantModel.from_folder(folder)
    assert without.gmm is None
    normal = without.generate(5, seed=3)
    # One tight component far out in the tiny VAE's 4-d latent space.
    gmm = LatentGMM(
        torch.ones(1, dtype=torch.float64),
        torch.full((1, 4), 3.0, dtype=torch.float64),
        0.01 * torch.eye(4, dtype=torch.float64)[None],
    )
    save_trained(folder / "seed0", model, config, gmm)
    loaded = VariantModel.from_folder(folder)
    # The default output is what it was: N(0, I) draws of the same seed.
    np.testing.assert_array_equal(loaded.generate(5, seed=3), normal)
    np.testing.assert_array_equal(loaded.generate(5, 3, "normal"), normal)
    np.testing.assert_array_equal(
        normal, to_numpy(model.sample(5, generator=torch.Generator().manual_seed(3)))
    )
    drawn = loaded.generate(5, seed=3, sampler="gmm")
    np.testing.assert_array_equal(
        drawn, to_numpy(sample_images(model, gmm, 5, torch.Generator().manual_seed(3)))
    )
    assert drawn.shape == normal.shape and not np.array_equal(drawn, normal)
    np.testing.assert_array_equal(drawn, loaded.generate(5, seed=3, sampler="gmm"))
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="sampler 'flow' is not one of normal, gmm"):
        loaded.generate(2, sampler="flow")
    with pytest.raises(MlflowException, match="this model has no latent GMM"):
        without.generate(2, sampler="gmm")

    out = workspace.root / "gmm.png"
    main(
        [
            "generate",
            "--model",
            str(folder),
            "-n",
            "4",
            "--seed",
            "3",
            "--sampler",
            "gmm",
            "--out",
            str(out),
        ]
    )
    with Image.open(out) as image:
        pixels = np.asarray(image)
    expected = np.round(drawn[0, :, :, 0] * 255)
    assert np.abs(tile(pixels, 0, 0).astype(float) - expected).max() <= 1
