"""evaluate@<variant> (and its experiments), chain and compare on tiny untrained variants, plus the
pieces with known answers."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from tests.support.features import SmallFeatures
from vaelab.chain.chain import run_chain
from vaelab.compare.compare import run_compare
from vaelab.config.evaluate_config import ArithmeticConfig, parse_expression
from vaelab.config.model_config import parse_model_config
from vaelab.data.download import run_download
from vaelab.data.prepare import run_prepare
from vaelab.data.prepared_data import load_prepared
from vaelab.errors import UserError
from vaelab.evaluate import experiments, fid
from vaelab.evaluate.context import Context, build_contexts
from vaelab.evaluate.evaluate import run_evaluate
from vaelab.evaluate.experiments.interpolation import interpolate
from vaelab.evaluate.latent_arithmetic import run_arithmetic, skip_reason
from vaelab.evaluate.latent_measures import PixelSpread, active_dims, collapse_verdict, elbo_terms
from vaelab.evaluate.result import Result, merge_into
from vaelab.io.hashing import md5_of_array
from vaelab.io.metric_files import metric_files
from vaelab.kernels import in_force
from vaelab.measures.headline import compare_json
from vaelab.models import Autoencoder, build_model
from vaelab.models.layers import gaussian_sample
from vaelab.models.losses import LossSettings
from vaelab.models.saved import SavedConfig, Trained, save_replicates

VARIANTS = {
    "tiny_ae": {"arch": "ae_pool"},
    "tiny_vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4},
    "tiny_vae_z2": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 2},
}
EVALUATE = {
    "batch_size": 4,
    "samples": 6,
    "show": 4,
    "radii": [0.5, 3.0],
    "radius_samples": 3,
    "interpolation": {"pairs": 2, "steps": 4},
    "sharpen": {"images": 5},
    "chain": {"vae": "tiny_vae", "ae": "tiny_ae", "passes": 2},
}
FIGURES = {
    "reconstructions",
    "samples",
    "radius",
    "interpolation",
    "latent_histograms",
    "sharpening",
}


class IdentityCode(Autoencoder):
    """A model whose latent is the image itself: z = x, decode(z) = z (for known-answer tests)."""

    def __init__(self, image_size: int, channels: int) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            latent_shape=(channels, image_size, image_size),
            loss_settings=LossSettings(),
        )
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # so that the model has a device

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        return {"z": x}

    def decode_logits(self, z: Tensor) -> Tensor:
        return torch.logit(z.clamp(1e-6, 1 - 1e-6))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Prepared lfw at 16 px and three untrained variants saved like train@<variant> saves them
    (tiny_vae with two replicates, seeds 0 and 1)."""
    from tests.conftest import TINY, deep_merge
    from vaelab.config import params_from_dict

    root = tmp_path_factory.mktemp("eval")
    params = params_from_dict(
        deep_merge(
            TINY, {"data": {"download": {"cache_dir": str(root / "downloads")}}, "models": VARIANTS}
        )
    )
    run_download(params, raw_root=root / "raw")
    run_prepare(
        params,
        raw_root=root / "raw",
        out_dir=root / "prepared",
        metrics_path=root / "data.json",
        progress=False,
    )
    torch.manual_seed(0)
    for variant, config in params.models.items():
        seeds = (0, 1) if variant == "tiny_vae" else (0,)
        save_replicates(
            root / "models" / variant,
            [
                Trained(
                    build_model(config, image_size=16, channels=1),
                    SavedConfig(
                        variant=variant,
                        model=config,
                        image_size=16,
                        channels=1,
                        seed=seed,
                        train=params.train,
                        trainable_params=1,
                        data=params.data,
                    ),
                )
                for seed in seeds
            ],
        )
        trained = metric_files(root / "metrics", f"train/{variant}.json")
        trained.write({"val": {"loss": 2.5}}, {"trainable_params": 123}, {"seconds": 1.5})
        (root / "metrics" / "history").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {
                "epoch": [1, 2],
                "train_loss": [3.0, 2.0],
                "val_loss": [3.5, 2.5],
                "train_recon": [3.0, 2.0],
                "val_recon": [3.5, 2.5],
            }
        ).to_csv(root / "metrics" / "history" / f"{variant}.csv", index=False)
    return root


@pytest.fixture
def params(make_params):
    return make_params({"models": VARIANTS, "evaluate": EVALUATE})


def _roots(root: Path) -> dict[str, Path]:
    return {
        "prepared": root / "prepared",
        "models_root": root / "models",
        "metrics_root": root / "metrics",
        "reports_root": root / "reports",
    }


def _opens(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize("variant", ["tiny_ae", "tiny_vae"])
def test_evaluate_writes_the_design_metrics_and_every_figure(workspace, params, variant):
    metrics = run_evaluate(params, variant, progress=False, **_roots(workspace))
    files = metric_files(workspace / "metrics", f"eval/{variant}.json")
    assert json.loads(files.detail.read_text()) == json.loads(json.dumps(metrics))
    # The DVC metrics: the headline numbers only, each the detail's value; no text, no spreads.
    headline = json.loads(files.headline.read_text())
    expected = {
        "mse": metrics["recon"]["mse"],
        "sharp": metrics["blur"]["laplacian_var"]["recon"],
        "sample_sharp": metrics["blur"]["laplacian_var"]["sample"],
    }
    if variant == "tiny_vae":  # an AE has no ELBO and no KL per unit
        expected |= {"elbo": metrics["elbo"], "active": metrics["latent"]["active_units"]}
    assert headline == expected
    assert set(metrics["recon"]) == {"mse", "psnr", "ssim"} and 0 <= metrics["recon"]["mse"] <= 1
    for name in ("laplacian_var", "hf_energy", "blur_effect"):
        assert set(metrics["blur"][name]) == {"input", "recon", "sample"}
        assert all(math.isfinite(v) for v in metrics["blur"][name].values())
    assert set(metrics["radius"]["laplacian_var"]) == {"r0_5", "r3"}
    assert set(metrics["sharpen"]) == {"none", "pil_0", "pil_3", "pil_6", "pil_7", "unsharp"}
    assert metrics["ood"]["inliers"] == 10 and metrics["ood"]["outliers"] == 100
    assert 0.0 <= metrics["ood"]["auroc_recon_error"] <= 1.0
    # lfw has no attributes: arithmetic is skipped with its reason, not failed.
    assert "no attribute column" in metrics["notes"]["arithmetic"]
    # What it measured on, for the registry's fingerprint: the test split and the settings
    # that can change a number (not the batch size, device, figures or the chain).
    test = load_prepared(workspace / "prepared").split("test")
    assert metrics["evaluated_on"]["test_md5"] == md5_of_array(test)
    settings = metrics["evaluated_on"]["settings"]
    assert (
        settings["seed"] == params.seed
        and settings["samples"] == 6
        and settings["radii"] == [0.5, 3.0]
    )
    assert not {"batch_size", "device", "show", "histogram_dims", "chain"} & set(settings)
    assert settings["inception"] == {
        "enabled": True,
        "kid_subsets": 100,
        "kid_subset_size": 1000,
    }  # not where the weights lie
    # FID and KID: the tests' hub cache is empty, so not measured, where to put the file, and
    # no number (the headline above has none either).
    place = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / fid.WEIGHTS_FILE
    assert metrics["inception"]["measured"] is False and metrics["inception"][
        "put the file at"
    ] == str(place)
    assert "inception" not in metrics["sd"]
    written = {p.stem for p in (workspace / "reports" / variant).glob("*.png")}
    if variant == "tiny_vae":
        assert set(metrics["latent"]) == {"dims", "kl_per_dim", "kl_per_dim_max", "active_units"}
        assert metrics["latent"]["dims"] == 4 and 0 <= metrics["latent"]["active_units"] <= 4
        assert math.isfinite(metrics["elbo"]) and metrics["elbo"] < 0
        assert metrics["elbo"] == pytest.approx(
            -(metrics["elbo_terms"]["recon"] + metrics["elbo_terms"]["kl"])
        )
        assert "auroc_neg_elbo" in metrics["ood"] and metrics["collapse"]["collapsed"] in (0, 1)
        assert metrics["notes"]["collapse"]
        assert written == FIGURES | {"kl_per_dim"}
    else:
        assert "latent" not in metrics and "elbo" not in metrics
        assert written == FIGURES
    for path in (workspace / "reports" / variant).glob("*.png"):
        width, height = _opens(path)
        assert width > 100 and height > 100


def test_replicates_give_means_spreads_and_intervals(workspace, params):
    metrics = run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    single = run_evaluate(params, "tiny_ae", progress=False, **_roots(workspace))
    assert metrics["images"] == {"test": 10, "samples": params.evaluate.samples, "seeds": 2}
    assert single["images"]["seeds"] == 1
    # Two different untrained models: their means differ, so the sd is positive and the mean
    # between.
    assert metrics["sd"]["recon"]["mse"] > 0 and set(metrics["sd"]) == set(metrics) - {
        "sd",
        "intervals",
        "images",
        "notes",
        "evaluated_on",
        "inception",
        "curves",
        "seeds",
    }  # not measured
    # The spectra: curves over frequency with their sd over seeds, and the per-image scalars.
    curves = metrics["curves"]
    bins = len(curves["freq"]["mean"])
    assert bins == params.data.image_size // 2 and curves["freq"]["sd"] == [0.0] * bins
    assert {"rapsd.input", "rapsd.recon", "rapsd.sample", "ratio.recon"} <= set(curves)
    assert all(len(c["mean"]) == len(c["sd"]) == len(c["min"]) == bins for c in curves.values())
    assert all(
        lo <= m <= hi
        for c in curves.values()
        for lo, m, hi in zip(c["min"], c["mean"], c["max"], strict=True)
    )
    assert 0 < metrics["spectrum"]["half_power"]["recon"] <= 1
    assert metrics["spectrum"]["half_power"]["input"] == 1.0
    assert "spectrum.half_power_ref.sample" in metrics["intervals"]
    interval = metrics["intervals"]["recon.mse"]
    assert interval["seeds"] == 2 and interval["images"] == 10
    assert metrics["recon"]["mse"] == pytest.approx(interval["mean"])
    assert interval["low"] <= interval["mean"] <= interval["high"]
    assert metrics["latent"]["dims"] == 4  # a count every replicate agrees on stays a count
    for key in (
        "blur.laplacian_var.input",
        "blur.laplacian_var_norm.sample",
        "elbo",
        "sharpen.pil_7.mse",
        "radius.laplacian_var.r3",
    ):
        assert key in metrics["intervals"], key
    # The inputs are the same for every seed: their interval comes from the images alone.
    assert metrics["sd"]["blur"]["laplacian_var"]["input"] == 0.0
    assert all(value == 0.0 for value in _metric_leaves(single["sd"]).values())


def _titles(figure: Figure) -> list[str]:
    """The figure's suptitle and its axes' titles."""
    texts = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    return texts + [ax.get_title() for ax in figure.axes]


def test_each_replicate_has_its_own_evaluation_and_figures_titled_with_its_seed(
    workspace, params, monkeypatch
):
    import vaelab.evaluate.evaluate as stage

    titles: dict[str, list[str]] = {}
    save = stage.figures.save

    def recorded(figure: Figure, path: Path) -> Path:
        titles[f"{path.parent.name}/{path.name}"] = _titles(figure)
        return save(figure, path)

    monkeypatch.setattr(stage.figures, "save", recorded)
    metrics = run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    own = metrics["seeds"]
    assert set(own) == {"0", "1"}
    # Each seed's section has the detail's shape with its own numbers: they differ (two
    # different untrained models), and their mean and sd are the detail's.
    mse = [own[seed]["recon"]["mse"] for seed in ("0", "1")]
    assert mse[0] != mse[1]
    assert metrics["recon"]["mse"] == pytest.approx(np.mean(mse))
    assert metrics["sd"]["recon"]["mse"] == pytest.approx(np.std(mse, ddof=1))
    assert own["0"]["latent"]["dims"] == 4 and "collapse" in own["1"]["notes"]
    assert not {"sd", "intervals", "seeds", "curves"} & set(own["0"])
    # Every replicate draws its figures into its own folder, each titled with its seed; the
    # variant's folder keeps the first replicate's.
    folder = workspace / "reports" / "tiny_vae"
    for seed in (0, 1):
        drawn = {p.stem for p in (folder / f"seed{seed}").glob("*.png")}
        assert drawn == FIGURES | {"kl_per_dim"}
        for name in drawn:
            found = titles[f"seed{seed}/{name}.png"]
            assert any(f"(seed {seed})" in text for text in found), (name, found)
    for png in folder.glob("*.png"):
        assert png.read_bytes() == (folder / "seed0" / png.name).read_bytes()
    assert {p.stem for p in folder.glob("*.png")} == FIGURES | {"kl_per_dim"}


def test_fid_and_kid_reach_the_detail_sd_and_headline_when_measured(workspace, params, monkeypatch):
    """Plumbing only: SmallFeatures stands in for Inception-v3 (whose weights the tests lack)."""
    digest = fid.SHA256_PREFIX + "0" * 56
    monkeypatch.setattr(fid, "resolve", lambda settings: fid.Weights(Path("inception.pth"), digest))
    monkeypatch.setattr(fid, "inception", lambda weights, device: SmallFeatures())
    metrics = run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    record = metrics["inception"]
    assert record["measured"] is True and record["weights_sha256"] == digest
    assert record["images"] == {"test": 10, "sample": 6, "recon": 10}
    assert record["kid_subset_size"] == {"sample": 6, "recon": 10}
    assert set(metrics["sd"]["inception"]) == {"fid", "kid", "kid_subsets_sd"}
    assert metrics["sd"]["inception"]["fid"]["sample"] > 0  # two different untrained replicates
    headline = json.loads(
        metric_files(workspace / "metrics", "eval/tiny_vae.json").headline.read_text()
    )
    assert headline["fid"] == record["fid"]["sample"] and "kid" not in headline
    assert json.loads(
        metric_files(workspace / "metrics", "eval/tiny_vae.json").detail.read_text()
    ) == json.loads(json.dumps(metrics))
    # Each replicate's own FID and KID, whose mean is the record's.
    fids = [metrics["seeds"][seed]["inception"]["fid"]["sample"] for seed in ("0", "1")]
    assert fids[0] != fids[1] and record["fid"]["sample"] == pytest.approx(np.mean(fids))


def _context(workspace: Path, params, variant: str) -> Context:
    return build_contexts(
        params,
        variant,
        prepared=workspace / "prepared",
        models_root=workspace / "models",
        progress=False,
    )[0]


def _metric_leaves(tree: dict, path: str = "") -> dict[str, float]:
    """The leaves of a metric tree by dotted path; fails on anything but str keys and int/float
    leaves."""
    leaves = {}
    for key, value in tree.items():
        assert isinstance(key, str) and "." not in key, f"{path}{key!r}"
        if isinstance(value, dict):
            leaves.update(_metric_leaves(value, f"{path}{key}."))
        else:
            assert isinstance(value, int | float) and not isinstance(value, bool), (
                f"{path}{key}: {value!r}"
            )
            leaves[f"{path}{key}"] = value
    return leaves


@pytest.mark.parametrize("variant", ["tiny_ae", "tiny_vae"])
def test_every_experiment_returns_metrics_notes_and_figures(workspace, params, variant):
    ctx = _context(workspace, params, variant)
    silent, drawn = set(), set()
    for experiment in experiments.EXPERIMENTS:
        result = experiment(ctx)
        try:
            assert isinstance(result, Result), experiment.__name__
            assert all(math.isfinite(v) for v in _metric_leaves(result.metrics).values()), (
                experiment.__name__
            )
            assert all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in result.notes.items()
            )
            assert all(
                isinstance(f, Figure) and n.endswith(".png") for n, f in result.figures.items()
            )
        finally:
            for figure in result.figures.values():
                plt.close(figure)
        if not (result.metrics or result.notes or result.figures):
            silent.add(experiment.__name__)
        drawn |= {Path(name).stem for name in result.figures}
    # Only the VAE experiments have nothing to say about a plain autoencoder.
    assert silent == ({"collapse", "elbo", "latent_code"} if variant == "tiny_ae" else set())
    assert drawn == (FIGURES if variant == "tiny_ae" else FIGURES | {"kl_per_dim"})


def test_shared_quantities_are_computed_once(workspace, params, monkeypatch):
    import vaelab.evaluate.context as context

    calls = {"forward passes": 0, "prior draws": 0, "input measures": 0}
    run_forward_pass, sample, measure_inputs = (
        context.run_forward_pass,
        Autoencoder.sample,
        context.measure_inputs,
    )

    def counted_pass(*args, **kwargs):
        calls["forward passes"] += 1
        return run_forward_pass(*args, **kwargs)

    def counted_inputs(*args, **kwargs):
        calls["input measures"] += 1
        return measure_inputs(*args, **kwargs)

    def counted_sample(*args, **kwargs):
        calls["prior draws"] += 1
        return sample(*args, **kwargs)

    monkeypatch.setattr(context, "run_forward_pass", counted_pass)
    monkeypatch.setattr(context, "measure_inputs", counted_inputs)
    monkeypatch.setattr(Autoencoder, "sample", counted_sample)
    run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    # Once per replicate (tiny_vae has two); the test images' own blur and spread once per stage.
    assert calls == {"forward passes": 2, "prior draws": 2, "input measures": 1}


def test_the_radius_figure_labels_its_rows_with_the_reported_numbers(workspace, params):
    result = experiments.radius(_context(workspace, params, "tiny_ae"))
    figure = result.figures["radius.png"]
    (ax,) = figure.axes  # one canvas; the row labels are its texts
    labels = [text.get_text() for text in ax.texts]
    plt.close(figure)
    raw, normalised = (
        result.metrics["radius"]["laplacian_var"],
        result.metrics["radius"]["laplacian_var_norm"],
    )
    assert labels == [
        f"r = {r:g}\nLap var {raw[key]:.4f}\nnormalised {normalised[key]:.3f}"
        for r, key in zip([0.5, 3.0], ["r0_5", "r3"], strict=True)
    ]


def _solid_rows() -> list[np.ndarray]:
    """Rows of 3, 1 and 2 solid 5x4 tiles, each of its own colour (row 1 grey: one channel)."""
    colours = [
        [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9)],
        [(0.2,)],
        [(0.2, 0.6, 0.8), (1.0, 1.0, 0.0)],
    ]
    return [np.array([np.full((5, 4, len(colour)), colour) for colour in row]) for row in colours]


def test_the_tiled_canvas_puts_each_image_in_its_cell():
    from vaelab.figures import TILE_GAP, tile_canvas

    rows = _solid_rows()
    rows[0][0, 0, 0] = (1.7, -0.2, 0.5)  # out of range: clipped, as the figures always did
    canvas, (height, width) = tile_canvas(rows)
    assert (height, width) == (5, 4) and canvas.dtype == np.uint8
    assert canvas.shape == (3 * (5 + TILE_GAP) - TILE_GAP, 3 * (4 + TILE_GAP) - TILE_GAP, 4)
    expected = np.zeros_like(canvas)  # transparent gaps and ends of short rows
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            tile = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            cell = expected[r * (5 + TILE_GAP) :][:5, c * (4 + TILE_GAP) :][:, :4]
            cell[..., :3], cell[..., 3] = tile, 255  # a grey tile fills R, G and B
    np.testing.assert_array_equal(canvas, expected)


def test_an_image_grid_is_one_axes_whose_pixels_keep_the_grid(tmp_path):
    """The saved figure: one axes with one image; each tile's colour fills a block of the PNG,
    the blocks in the grid's order (rows top to bottom, columns left to right). No title or
    labels: the only text is the grey scale note, whose anti-aliased pixels are lighter than
    any tile here."""
    from vaelab import figures

    rows = _solid_rows()
    figure = figures.image_rows(rows, title="")
    assert len(figure.axes) == 1 and len(figure.axes[0].images) == 1
    pixels = np.asarray(
        Image.open(figures.save(figure, tmp_path / "grid.png")).convert("RGB")
    ).astype(int)
    centres = []
    for row in rows:
        found = []
        for image in row:
            colour = (np.clip(image[0, 0], 0, 1) * 255).astype(np.uint8).astype(int)
            ys, xs = np.nonzero((pixels == np.resize(colour, 3)).all(axis=-1))
            # A solid block at least as big as the tile (nearest-neighbour upscaling keeps colours).
            assert len(ys) >= 5 * 4 and (ys.max() - ys.min() + 1) * (
                xs.max() - xs.min() + 1
            ) == len(ys)
            found.append((ys.mean(), xs.mean()))
        centres.append(found)
    for row in centres:
        assert [x for _y, x in row] == sorted(x for _y, x in row)  # left to right
        assert max(y for y, _x in row) - min(y for y, _x in row) < 1  # on one line
    assert [row[0][0] for row in centres] == sorted(row[0][0] for row in centres)  # top to bottom
    assert centres[1][0][1] == pytest.approx(centres[0][0][1], abs=1)  # first columns aligned


def test_merge_nests_and_refuses_a_key_written_twice():
    tree: dict = {}
    merge_into(tree, {"blur": {"lap": {"input": 1.0}}}, kind="metric", source="a")
    merge_into(tree, {"blur": {"lap": {"sample": 2.0}}, "count": 3}, kind="metric", source="b")
    assert tree == {"blur": {"lap": {"input": 1.0, "sample": 2.0}}, "count": 3}
    for clash, path in (
        ({"blur": {"lap": {"input": 9.0}}}, "blur.lap.input"),  # a number twice
        ({"blur": {"lap": 9.0}}, "blur.lap"),  # a number over a branch
        ({"count": {"more": 1}}, "count"),
    ):  # a branch over a number
        with pytest.raises(ValueError, match=f"'c' writes metric '{path}'"):
            merge_into(tree, clash, kind="metric", source="c")
    assert tree["blur"]["lap"]["input"] == 1.0 and tree["count"] == 3


def _figure() -> Figure:
    figure, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return figure


@pytest.mark.parametrize(
    "field, what",
    [
        ("metrics", "metric 'shared.value'"),
        ("notes", "note 'shared'"),
        ("figures", "figure 'shared.png'"),
    ],
)
def test_evaluate_refuses_two_experiments_writing_one_name(
    workspace, params, monkeypatch, field, what
):
    def writes(experiment: str) -> dict:
        """The clashing name, and a figure of the experiment's own unless the figure is the
        clash."""
        if field == "figures":
            return {"figures": {"shared.png": _figure()}}
        shared = {"metrics": {"shared": {"value": 1.0}}, "notes": {"shared": "text"}}[field]
        return {field: shared, "figures": {f"{experiment}.png": _figure()}}

    def first(ctx: Context) -> Result:
        return Result(**writes("first"))

    def second(ctx: Context) -> Result:
        return Result(**writes("second"))

    monkeypatch.setattr(experiments, "EXPERIMENTS", [first])
    run_evaluate(params, "tiny_ae", progress=False, **_roots(workspace))
    json_path, reports = (
        workspace / "metrics" / "detail" / "eval" / "tiny_ae.json",
        workspace / "reports" / "tiny_ae",
    )
    before = json_path.read_bytes(), sorted(p.name for p in reports.iterdir())
    monkeypatch.setattr(experiments, "EXPERIMENTS", [first, second])
    with pytest.raises(ValueError, match=f"'second' writes {what}"):
        run_evaluate(params, "tiny_ae", progress=False, **_roots(workspace))
    # The outputs of the last good run stand; no figure is left open.
    assert (json_path.read_bytes(), sorted(p.name for p in reports.iterdir())) == before
    assert plt.get_fignums() == []


@pytest.mark.parametrize("key", ["notes", "images"])
def test_an_experiment_may_not_add_to_the_stages_own_keys(workspace, params, monkeypatch, key):
    def intruder(ctx: Context) -> Result:
        return Result(metrics={key: {"mine": 1}})

    monkeypatch.setattr(experiments, "EXPERIMENTS", [intruder])
    with pytest.raises(
        ValueError, match=f"'intruder' writes metric '{key}', which run_evaluate writes itself"
    ):
        run_evaluate(params, "tiny_ae", progress=False, **_roots(workspace))


def test_an_experiment_added_to_the_list_reaches_the_json_and_the_reports(
    workspace, params, monkeypatch
):
    def darkest(ctx: Context) -> Result:
        value = int(ctx.test.min())
        figure = _figure()
        return Result(
            metrics={"darkest": {"pixel": value}},
            notes={"darkest": f"darkest test pixel {value}"},
            figures={"darkest.png": figure},
        )

    monkeypatch.setattr(experiments, "EXPERIMENTS", [*experiments.EXPERIMENTS, darkest])
    run_evaluate(params, "tiny_ae", progress=False, **_roots(workspace))
    on_disk = json.loads((workspace / "metrics" / "detail" / "eval" / "tiny_ae.json").read_text())
    darkest_pixel = int(load_prepared(workspace / "prepared").split("test").min())
    assert on_disk["darkest"] == {"pixel": darkest_pixel}
    assert on_disk["notes"]["darkest"] == f"darkest test pixel {darkest_pixel}"
    assert set(on_disk["recon"]) == {"mse", "psnr", "ssim"}  # the others still ran
    written = {p.stem for p in (workspace / "reports" / "tiny_ae").glob("*.png")}
    assert written == FIGURES | {"darkest"}
    _opens(workspace / "reports" / "tiny_ae" / "darkest.png")


def test_chain_records_every_pass(workspace, params):
    run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    metrics = run_chain(params, **_roots(workspace))
    assert list(metrics) == ["pass_input", "pass_0", "pass_1", "pass_2"]  # numbers only
    assert metrics["pass_input"]["mse_to_input"] == 0.0 and metrics["pass_2"]["mse_to_input"] > 0
    # Grey images: no colour to drift, so no colour shift is reported or drawn.
    assert all("colour_shift_from_input" not in entry for entry in metrics.values())
    files = metric_files(workspace / "metrics", "chain.json")
    # The detail adds the CPU kernels that computed it (vaelab.kernels).
    assert json.loads(files.detail.read_text()) == metrics | {"kernels": in_force()}
    assert json.loads(files.headline.read_text()) == {
        "sharp": metrics["pass_2"]["laplacian_var"],
        "mse": metrics["pass_2"]["mse_to_input"],
    }
    table = pd.read_csv(workspace / "metrics" / "chain.csv")
    assert list(table["pass"]) == [-1, 0, 1, 2] and "laplacian_var_norm" in table
    assert {p.stem for p in (workspace / "reports" / "chain").glob("*.png")} == {
        "chain",
        "chain_sharpness",
    }
    for name in ("chain", "chain_sharpness"):
        _opens(workspace / "reports" / "chain" / f"{name}.png")


def _chain_at_once(params, root: Path) -> dict[str, dict[str, float]]:
    """The chain as it was before it streamed: every pass of the whole test split held at once."""
    from vaelab.measures.image_measures import blur_metrics
    from vaelab.models.inference import reconstruct, to_tensor
    from vaelab.models.replicates import load_variant

    settings, batch = params.evaluate.chain, params.evaluate.batch_size
    vae, _ = load_variant(params, settings.vae, root / "models")
    ae, _ = load_variant(params, settings.ae, root / "models")
    test = load_prepared(root / "prepared").split("test")
    with torch.no_grad():
        inputs = to_tensor(test, torch.device("cpu"))
        stages = [inputs, reconstruct(vae, test, batch).float()]
        for _ in range(settings.passes):
            stages.append(
                torch.cat(
                    [
                        ae(stages[-1][i : i + batch])["recon"].float()
                        for i in range(0, len(test), batch)
                    ]
                )
            )
    return {
        f"pass_{'input' if k == 0 else k - 1}": {
            **{key: float(values.mean()) for key, values in blur_metrics(images).items()},
            "mse_to_input": float((images - inputs).square().mean()),
        }
        for k, images in enumerate(stages)
    }


def test_the_streamed_chain_gives_the_numbers_of_the_whole_split_at_once(
    workspace, params, make_params, monkeypatch
):
    """Known answer: the chain as it was (each pass's images of the whole split in memory). The
    blur means are the same bits; mse_to_input too when the split is one batch, and within float32
    rounding when it is several. No metric sees more than a batch of images."""
    from vaelab.chain import chain

    test_images = len(load_prepared(workspace / "prepared").split("test"))
    assert (
        test_images > 2 * params.evaluate.batch_size
    )  # several batches, a last one shorter or not
    seen = []
    measure = chain.blur_metrics
    monkeypatch.setattr(
        chain, "blur_metrics", lambda images: seen.append(len(images)) or measure(images)
    )
    streamed = run_chain(params, **_roots(workspace))
    assert max(seen) == params.evaluate.batch_size and sum(seen) == test_images * (
        params.evaluate.chain.passes + 2
    )
    at_once = _chain_at_once(params, workspace)
    assert streamed.keys() == at_once.keys()
    for key, expected in at_once.items():
        assert {k: v for k, v in streamed[key].items() if k != "mse_to_input"} == {
            k: v for k, v in expected.items() if k != "mse_to_input"
        }
        assert streamed[key]["mse_to_input"] == pytest.approx(
            expected["mse_to_input"], rel=1e-6, abs=0
        )
    one_batch = make_params(
        {"models": VARIANTS, "evaluate": {**EVALUATE, "batch_size": test_images}}
    )
    assert run_chain(one_batch, **_roots(workspace)) == _chain_at_once(one_batch, workspace)


def test_a_pass_aggregate_streams_to_the_whole_split_numbers():
    """Colour images in batches of 4: each running aggregate equals its whole-split formula."""
    from vaelab.chain.chain import PassAggregate
    from vaelab.measures.image_measures import blur_metrics, colour_shift

    generator = torch.Generator().manual_seed(7)
    inputs, vae_output = (
        torch.rand(11, 3, 8, 8, generator=generator),
        torch.rand(11, 3, 8, 8, generator=generator),
    )
    images = (vae_output + 0.1 * torch.randn(11, 3, 8, 8, generator=generator)).clamp(0, 1)
    streamed, whole = PassAggregate("ae x1", 11), PassAggregate("ae x1", 11)
    for first in range(0, 11, 4):
        part = slice(first, first + 4)
        streamed.add(images[part], inputs[part], vae_output[part], show=5)
    whole.add(images, inputs, vae_output, show=5)
    for key, values in blur_metrics(images).items():
        assert streamed.blur_mean(key) == float(values.mean())
    assert streamed.colour_shift("input") == colour_shift(inputs, images)
    assert streamed.colour_shift("vae") == colour_shift(vae_output, images)
    assert whole.mse_to_input() == float(
        (images - inputs).square().mean()
    )  # one batch: torch's own mean
    assert streamed.mse_to_input() == pytest.approx(whole.mse_to_input(), rel=1e-6)
    assert torch.equal(streamed.shown(), images[:5])


def test_the_chain_table_has_colour_columns_for_rgb_images_only(tmp_path):
    from vaelab.chain.chain import write_table

    write_table(tmp_path / "rgb.csv", [], rgb=True)
    write_table(tmp_path / "grey.csv", [])
    assert "colour_shift_from_vae" in (tmp_path / "rgb.csv").read_text()
    assert "colour_shift" not in (tmp_path / "grey.csv").read_text()


def test_chain_names_a_missing_variant(workspace, make_params):
    # Caught when params load, before any stage runs.
    with pytest.raises(UserError, match=r"evaluate\.chain\.vae: 'nope' is not a variant of models"):
        make_params(
            {
                "models": VARIANTS,
                "evaluate": {**EVALUATE, "chain": {"vae": "nope", "ae": "tiny_ae"}},
            }
        )


def test_compare_writes_one_table_claims_and_side_by_side_figures(workspace, params):
    for variant in VARIANTS:
        run_evaluate(params, variant, progress=False, **_roots(workspace))
    result = run_compare(params, **_roots(workspace))
    assert set(result["variants"]) == set(VARIANTS)
    assert set(result["variants"]["tiny_vae"]) == {m.detail for m in compare_json()}
    # Every claim is in the detail, measured or not; no same-bottleneck AE and no KL family here.
    claims = result["claims"]
    assert claims["vae_vs_ae"]["outcome"] == "not measured" and "hold" not in claims["vae_vs_ae"]
    measured = {key for key, claim in claims.items() if "hold" in claim}
    assert measured == {"recon_blur", "sample_blur", "sharpen", "sharpen_mse"}
    # The untrained tiny VAEs are collapsed: the z_dim family is compared, and counts for nothing.
    assert claims["small_z"]["outcome"] == "collapsed" and claims["small_z"]["comparisons"]
    recon = claims["recon_blur"]
    assert len(recon["comparisons"]) == len(VARIANTS) and 0 <= recon["hold"] <= 1
    first = recon["comparisons"][0]
    assert first["a"] == ["tiny_ae", "recon"] and first["b"] == ["tiny_ae", "input"]
    assert set(first["results"]) == {"laplacian_var", "half_power"}
    assert first["results"]["laplacian_var"]["images"] == 10
    assert first["results"]["laplacian_var"]["level"] == pytest.approx(1 - 0.05 / len(VARIANTS))
    files = metric_files(workspace / "metrics", "compare.json")
    assert json.loads(files.detail.read_text()) == json.loads(json.dumps(result)) | {
        "kernels": in_force()
    }
    # The headline: how many measured claims hold and go against the studies, nothing else.
    outcomes = [claims[key]["outcome"] for key in measured]
    assert json.loads(files.headline.read_text()) == {
        "claims_hold": sum(o in ("holds", "mostly holds") for o in outcomes),
        "claims_against": sum(o in ("does not hold", "mostly does not hold") for o in outcomes),
    }
    report = (workspace / "reports" / "compare.md").read_text()
    assert report.startswith("# What this run says about blur\n\n![verdicts")
    assert len(report.splitlines()) <= 120 and len(report.split()) <= 1200
    assert "1/2 seeds each, 10 test images" in report and "compare_detail.md" in report
    detail = (workspace / "reports" / "compare_detail.md").read_text()
    assert "### Reconstructions are blurrier than the test images" in detail
    assert "tiny_vae: reconstructions vs inputs: " in detail and "n = 2/2 seeds × 10" in detail
    assert "needs a VAE and a vae_conv entry" in detail
    # The parameter count comes from the training's detail, its seconds from the timing file.
    assert re.search(r"\| tiny_vae .*\|\s+123 \|\s+2 \|$", detail, re.MULTILINE)
    assert "### z_dim" in detail and "tiny_vae_z2 (z_dim 2) vs tiny_vae (z_dim 4)" in detail
    for name in (
        "reconstructions",
        "samples",
        "sharpness_vs_error",
        "family_z_dim_tiny_vae_z2_tiny_vae",
        "verdicts",
        "forest",
        "spectra",
    ):
        _opens(workspace / "reports" / "compare" / f"{name}.png")
    history = pd.read_csv(workspace / "metrics" / "compare" / "history.csv")
    assert set(history["variant"]) == set(VARIANTS) and len(history) == 2 * len(VARIANTS)


def test_compare_needs_every_evaluation(workspace, make_params):
    params = make_params(
        {"models": {**VARIANTS, "never_evaluated": {"arch": "ae_pool"}}, "evaluate": EVALUATE}
    )
    with pytest.raises(UserError, match="evaluate@never_evaluated"):
        run_compare(params, **_roots(workspace))


def test_interpolation_has_known_ends_and_midpoints():
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    linear = interpolate(z0, z1, 3, "linear")
    assert torch.allclose(linear, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    spherical = interpolate(z0, z1, 3, "spherical")
    assert torch.allclose(spherical[1], torch.tensor([math.sqrt(0.5)] * 2), atol=1e-6)
    assert torch.allclose(spherical.norm(dim=1), torch.ones(3), atol=1e-6)
    maps = interpolate(torch.zeros(2, 3, 3), torch.ones(2, 3, 3), 5)
    assert maps.shape == (5, 2, 3, 3) and torch.allclose(maps[2], torch.full((2, 3, 3), 0.5))
    with pytest.raises(ValueError, match="unknown interpolation"):
        interpolate(z0, z1, 3, "cubic")


def test_arithmetic_on_a_model_whose_latents_are_the_images():
    # Four groups of 2x2 grey images with known means; z = x, so the arithmetic is on pixels.
    values = {"smiling_woman": 0.8, "neutral_woman": 0.5, "neutral_man": 0.3, "smiling_man": 0.6}
    attrs = {
        "smiling_woman": (1, 0),
        "neutral_woman": (0, 0),
        "neutral_man": (0, 1),
        "smiling_man": (1, 1),
    }
    images, rows = [], []
    for group, value in values.items():
        for offset in (-0.05, 0.05):
            images.append(np.full((2, 2, 1), round((value + offset) * 255), dtype=np.uint8))
            rows.append({"split": "train", "Smiling": attrs[group][0], "Male": attrs[group][1]})
    index = pd.DataFrame(rows)
    config = ArithmeticConfig()
    assert skip_reason(index, config) is None
    [result] = run_arithmetic(IdentityCode(2, 1), np.stack(images), index, config, batch_size=3)
    expected = 0.8 - 0.5 + 0.3
    assert result.result.shape == (1, 2, 2)
    assert torch.allclose(result.result, torch.full((1, 2, 2), expected), atol=0.01)
    assert torch.allclose(result.expected, torch.full((1, 2, 2), 0.6), atol=0.01)
    assert result.mse_to_expected == pytest.approx(0.0, abs=1e-3)
    assert [g for _s, g in result.terms] == ["smiling_woman", "neutral_woman", "neutral_man"]


def test_the_forward_pass_streams_to_the_numbers_of_the_whole_split_at_once():
    """Known answer: a model whose code is the image (its outputs do not depend on the batch),
    run over 23 RGB images in batches of 4, gives each metric, spread and code of measuring the
    split in one go; only the first ``keep`` reconstructions stay."""
    from vaelab.evaluate.forward_pass import run_forward_pass
    from vaelab.evaluate.latent_measures import PixelSpread
    from vaelab.measures.image_measures import blur_metrics, reconstruction_metrics
    from vaelab.models.inference import to_tensor

    test = np.random.default_rng(4).integers(0, 256, (23, 12, 12, 3), dtype=np.uint8)
    model = IdentityCode(12, 3).eval()
    streamed = run_forward_pass(model, test, batch_size=4, keep=6, seed=0, progress=False)
    inputs = to_tensor(test, torch.device("cpu"))
    with torch.no_grad():
        recons = model(inputs)["recon"].float()
    for name, values in reconstruction_metrics(inputs, recons).items():
        np.testing.assert_array_equal(streamed.recon[name], values, err_msg=name)
    for source, images in (("input", inputs), ("recon", recons)):
        for name, values in blur_metrics(images).items():
            np.testing.assert_array_equal(
                streamed.blur[source][name], values, err_msg=f"{source} {name}"
            )
        whole = PixelSpread()
        whole.add(images)
        assert streamed.spread[source] == pytest.approx(whole.spread(), rel=1e-12)
    assert torch.equal(streamed.codes, inputs.flatten(1)) and streamed.codes.dtype == torch.float32
    assert torch.equal(streamed.first_recons, recons[:6])
    assert streamed.elbo is None and streamed.kl_per_dim is None


def test_input_measures_made_once_are_the_forward_pass_own_to_the_bit():
    """The test images' blur and spread measured apart (once per stage) and handed to a pass
    equal what the pass measures itself; the reconstructions' are still measured by the pass."""
    from vaelab.evaluate.forward_pass import measure_inputs, run_forward_pass

    test = np.random.default_rng(5).integers(0, 256, (11, 12, 12, 1), dtype=np.uint8)
    model = IdentityCode(12, 1).eval()
    itself = run_forward_pass(model, test, batch_size=4, keep=2, seed=0, progress=False)
    measured = measure_inputs(test, batch_size=4, device=torch.device("cpu"))
    handed = run_forward_pass(
        model, test, batch_size=4, keep=2, seed=0, progress=False, inputs=measured
    )
    assert handed.blur["input"] is measured.blur and handed.spread["input"] == measured.spread
    for source in ("input", "recon"):
        assert handed.spread[source] == itself.spread[source]
        for name, values in itself.blur[source].items():
            np.testing.assert_array_equal(
                handed.blur[source][name], values, err_msg=f"{source} {name}"
            )


def test_arithmetic_skip_reasons():
    config = ArithmeticConfig()
    assert "Male, Smiling" in skip_reason(pd.DataFrame({"split": ["train"], "face": [1]}), config)
    no_men = pd.DataFrame({"split": ["train", "train"], "Smiling": [1, 0], "Male": [0, 0]})
    assert "neutral_man" in skip_reason(no_men, config)


def test_expressions_parse_or_say_why():
    assert parse_expression("a - b + c") == [(1, "a"), (-1, "b"), (1, "c")]
    assert parse_expression("-a") == [(-1, "a")]
    for bad in ("a b", "a -- b", "", "a + 3"):
        with pytest.raises(ValueError):
            parse_expression(bad)


def test_latent_statistics_with_known_answers():
    mu = torch.tensor([[0.0, 1.0, 5.0], [0.0, -1.0, 5.01], [0.0, 1.0, 5.0], [0.0, -1.0, 5.01]])
    # only the middle dimension varies (variance 1)
    assert active_dims(mu, 0.01).tolist() == [False, True, False]

    spread = PixelSpread()
    spread.add(torch.zeros(2, 1, 2, 2))
    spread.add(torch.ones(2, 1, 2, 2))
    assert spread.spread() == pytest.approx(0.5)
    same = PixelSpread()
    same.add(torch.full((3, 1, 2, 2), 0.3))
    assert same.spread() == pytest.approx(0.0, abs=1e-7)

    collapsed, text = collapse_verdict(0.02, 0.03, 0.1, active=3, dims=16)
    assert collapsed and "posterior collapse" in text and "3 of 16" in text
    used, text = collapse_verdict(0.8, 0.7, 0.1, active=12, dims=16)
    assert not used and "uses z" in text
    # No active dimension is collapse, whatever the outputs' spread: the verdict says so.
    collapsed, text = collapse_verdict(0.5, 0.4, 0.1, active=0, dims=256)
    assert collapsed and text.startswith("posterior collapse: 0 of 256 latent dimensions active")
    assert "partial" not in text


def test_elbo_terms_of_a_posterior_equal_to_the_prior():
    model = build_model_vae()
    with torch.no_grad():
        for p in model.encoder.mu.parameters():
            p.zero_()
        for p in model.encoder.logvar.parameters():
            p.zero_()
    terms = elbo_terms(model.eval(), torch.rand(3, 1, 8, 8), torch.Generator().manual_seed(0))
    assert torch.allclose(terms["kl"], torch.zeros(3), atol=1e-6)
    assert terms["kl_per_dim"].shape == (3, 2)
    assert torch.allclose(terms["elbo"], -terms["recon"])


def test_the_elbo_draw_is_the_generators_noise_on_the_models_device():
    # gaussian_sample draws on the generator's device: a CPU generator gives the same
    # numbers as drawing the noise by hand, so reruns of evaluate stay byte-identical.
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    drawn = gaussian_sample(mu, logvar, torch.Generator().manual_seed(7))
    assert torch.equal(drawn, mu + torch.exp(0.5 * logvar) * noise)


@pytest.mark.gpu
def test_a_cpu_generator_draws_for_codes_on_the_gpu():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    on_cpu = gaussian_sample(mu, logvar, torch.Generator().manual_seed(7))
    on_gpu = gaussian_sample(mu.cuda(), logvar.cuda(), torch.Generator().manual_seed(7))
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-6)


def build_model_vae():

    return build_model(
        parse_model_config({"arch": "vae_conv", "filters": [4], "z_dim": 2}),
        image_size=8,
        channels=1,
    )


def test_evaluate_names_an_untrained_variant(workspace, make_params):
    params = make_params(
        {"models": {**VARIANTS, "untrained": {"arch": "ae_pool"}}, "evaluate": EVALUATE}
    )
    with pytest.raises(UserError, match=r"train@untrained"):
        run_evaluate(params, "untrained", progress=False, **_roots(workspace))


def test_compare_measures_each_remedy_against_its_plain_vae_in_a_table_a_figure_and_the_verdicts(
    workspace, make_params
):
    """tiny_vae_sigma is tiny_vae with a Gaussian decoder: a σ-VAE row against tiny_vae (same
    trunk and z), not against tiny_vae_z2; its verdicts reach metrics/compare.json."""
    from tests.conftest import TINY, deep_merge
    from vaelab.config import params_from_dict

    remedy = {
        "tiny_vae_sigma": {**VARIANTS["tiny_vae"], "recon_loss": "gaussian", "sigma": "optimal"}
    }
    params = make_params({"models": {**VARIANTS, **remedy}, "evaluate": EVALUATE})
    config = params.models["tiny_vae_sigma"]
    torch.manual_seed(1)
    save_replicates(
        workspace / "models" / "tiny_vae_sigma",
        [
            Trained(
                build_model(config, image_size=16, channels=1),
                SavedConfig(
                    variant="tiny_vae_sigma",
                    model=config,
                    image_size=16,
                    channels=1,
                    seed=0,
                    train=params.train,
                    trainable_params=1,
                    data=params.data,
                ),
            )
        ],
    )
    metric_files(workspace / "metrics", "train/tiny_vae_sigma.json").write(
        {"val": {"loss": 2.5}}, {}, {}
    )
    assert params_from_dict(deep_merge(TINY, {"models": {**VARIANTS, **remedy}}))  # a valid entry
    for variant in params.models:
        run_evaluate(params, variant, progress=False, **_roots(workspace))
    result = run_compare(params, **_roots(workspace))

    assert set(result["remedies"]) == {"tiny_vae_sigma"}
    remedy = result["remedies"]["tiny_vae_sigma"]
    assert remedy["baseline"] == "tiny_vae"
    assert set(remedy["verdicts"]) == {"recon_sharpness", "sample_sharpness", "mse"}
    # The untrained tiny VAEs are collapsed: every verdict is marked so, and none is scored.
    assert set(remedy["verdicts"].values()) == {"collapsed"}
    assert "collapsed" in remedy["comparisons"]["mse"]["note"]
    headline = json.loads(metric_files(workspace / "metrics", "compare.json").headline.read_text())
    assert "remedies_better" not in headline and "remedies_worse" not in headline
    report = (workspace / "reports" / "compare.md").read_text()
    section = report[report.index("## Remedies") :]
    assert "| tiny_vae_sigma " in section and "| sigma_vae " in section
    assert "| tiny_vae " in section  # the "against" column of the table
    detail = (workspace / "reports" / "compare_detail.md").read_text()
    remedies = detail[detail.index("## Remedies") :]
    assert "- tiny_vae_sigma (calibrated Gaussian decoder (σ-VAE)" in remedies
    assert "tiny_vae_sigma vs tiny_vae (mse): " in remedies and "n = 1/2 seeds × 10" in remedies
    assert "![remedies](compare/remedies.png)" in remedies
    # No Inception weights in the tests' hub cache: FID and KID are said to be unmeasured.
    assert "FID and KID: not measured — " in remedies
    width, height = _opens(workspace / "reports" / "compare" / "remedies.png")
    assert height > width / 8  # three rows: input, tiny_vae, tiny_vae_sigma


def test_compare_without_remedies_writes_no_remedies_section_or_verdicts(workspace, params):
    for variant in VARIANTS:
        run_evaluate(params, variant, progress=False, **_roots(workspace))
    result = run_compare(params, **_roots(workspace))
    assert "remedies" not in result
    assert "## Remedies" not in (workspace / "reports" / "compare.md").read_text()
    assert not (workspace / "reports" / "compare" / "remedies.png").exists()


def _without_gmm(tree: dict) -> dict:
    """A metric tree less every ``sample_gmm`` leaf and interval."""
    kept = {}
    for key, value in tree.items():
        if key == "sample_gmm" or key.endswith(".sample_gmm"):
            continue
        kept[key] = _without_gmm(value) if isinstance(value, dict) else value
    return kept


def test_a_model_saved_with_a_gmm_is_also_sampled_from_it(workspace, params, make_params, tmp_path):
    """evaluate.sampler's gmm: ``*.sample_gmm`` metrics and samples_gmm.png beside the N(0, I)
    ones, which stay what they were; sampler [normal] measures no GMM."""
    import shutil

    from vaelab.models.latent_gmm import LatentGMM
    from vaelab.models.saved import load_trained, replicates, save_trained

    plain = run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    plain_samples = (workspace / "reports" / "tiny_vae" / "samples.png").read_bytes()
    root = tmp_path / "with_gmm"
    shutil.copytree(workspace / "models" / "tiny_vae", root / "models" / "tiny_vae")
    for seed, folder in replicates(root / "models" / "tiny_vae"):
        model, config = load_trained(folder)
        # Two components far from the origin: samples unlike the prior's.
        gmm = LatentGMM(
            torch.tensor([0.5, 0.5], dtype=torch.float64),
            torch.tensor([[4.0] * 4, [-4.0 - seed] * 4], dtype=torch.float64),
            0.1 * torch.eye(4, dtype=torch.float64).repeat(2, 1, 1),
        )
        save_trained(folder, model, config, gmm)
    roots = {**_roots(root), "prepared": workspace / "prepared"}
    both = run_evaluate(params, "tiny_vae", progress=False, **roots)
    assert params.evaluate.sampler == ["normal", "gmm"]  # the default
    for name in ("laplacian_var", "laplacian_var_norm", "hf_energy", "blur_effect"):
        assert set(both["blur"][name]) == {"input", "recon", "sample", "sample_gmm"}
        assert both["blur"][name]["sample_gmm"] != both["blur"][name]["sample"]
    assert both["spread"]["sample_gmm"] > 0 and "blur.laplacian_var.sample_gmm" in both["intervals"]
    assert both["intervals"]["blur.laplacian_var.sample_gmm"]["images"] == params.evaluate.samples
    headline = json.loads(metric_files(root / "metrics", "eval/tiny_vae.json").headline.read_text())
    assert "sample_gmm" not in json.dumps(headline)  # the GMM's samples: in the detail only
    # Every other number is the one the model without a GMM got, the N(0, I) samples' too.
    assert _without_gmm(both) == plain
    reports = root / "reports" / "tiny_vae"
    assert (reports / "samples.png").read_bytes() == plain_samples
    assert {p.stem for p in reports.glob("*.png")} == FIGURES | {"kl_per_dim", "samples_gmm"}
    assert _opens(reports / "samples_gmm.png")[0] > 100

    # sampler [normal]: the GMM is there but not measured.
    normal_only = make_params({"models": VARIANTS, "evaluate": {**EVALUATE, "sampler": ["normal"]}})
    assert run_evaluate(normal_only, "tiny_vae", progress=False, **roots) == plain
    assert not (reports / "samples_gmm.png").exists()
    # A model without a GMM (tiny_ae) is measured on N(0, I) alone under the default too.
    ctx = _context(workspace, params, "tiny_ae")
    assert ctx.gmm is None and list(ctx.sampled) == ["sample"]


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        (["gmm"], "evaluate.sampler: must include normal"),
        (["normal", "normal"], "names a sampler twice"),
        (["normal", "flow"], "evaluate.sampler.1: 'flow' is not allowed"),
    ],
)
def test_a_wrong_sampler_is_one_message_naming_the_key(make_params, sampler, message):
    with pytest.raises(UserError, match=re.escape(message)):
        make_params({"evaluate": {"sampler": sampler}})


def test_evaluate_keeps_every_per_image_value_in_a_table(workspace, params):
    from vaelab.io.per_image_table import paired_values, per_image_path, read_tables

    metrics = run_evaluate(params, "tiny_vae", progress=False, **_roots(workspace))
    path = per_image_path(workspace / "metrics", "tiny_vae")
    table = read_tables([path])
    assert set(table["seed"]) == {0, 1} and set(table["variant"]) == {"tiny_vae"}
    # Every per-image key of the intervals is in it, one row per seed and image.
    keys = {f"{s}/{m}" for s, m in zip(table["set"], table["measure"], strict=True)}
    assert len(keys) == len(metrics["intervals"])
    ids = list(table[(table["set"] == "input") & (table["measure"] == "laplacian_var")]["image_id"])
    assert len(ids) == 2 * 10 and ids[:10] == ids[10:]
    recon = paired_values(table, "tiny_vae", "recon", "mse", ids[:10])
    assert recon.shape == (2, 10)
    assert recon.mean() == pytest.approx(metrics["recon"]["mse"])
