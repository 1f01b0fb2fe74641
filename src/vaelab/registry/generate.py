"""``vaelab generate`` and ``vaelab reconstruct``: a trained model, by URI or folder, to a PNG
grid; and the command line of ``vaelab promote`` (:mod:`.promote` moves ``champion``).

``--model`` takes an MLflow model URI (``models:/vaelab-vae@champion``,
``models:/vaelab-vae/3``, ``runs:/<id>/<variant>``: the logged model is named after its
variant), resolved against ``MLFLOW_TRACKING_URI`` or the project's ``sqlite:///mlflow.db``,
or a folder: a ``models/<variant>/`` output of ``train`` or a saved MLflow model (with ``MLmodel``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from vaelab.errors import UserError

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from vaelab.models.saved import SavedConfig
    from vaelab.registry.pyfunc import VariantModel

log = logging.getLogger("vaelab.registry")

# Pixels of white between tiles and around the grid.
TILE_GAP = 1
GAP_VALUE = 1.0


# --------------------------------------------------------------------------- model


def _is_uri(ref: str) -> bool:
    # Two letters at least, so that a Windows drive ("C:\\...") reads as a path.
    return len(urlsplit(ref).scheme) > 1


def open_model(ref: str) -> VariantModel:
    """Load a vaelab model from an MLflow URI or a folder; UserError naming ``ref`` if it can't."""
    from vaelab.models.saved import is_saved, replicates

    if not _is_uri(ref):
        folder = Path(ref)
        if is_saved(folder) or replicates(folder):
            from vaelab.registry.pyfunc import VariantModel

            log.info("loading %s", folder)
            return VariantModel.from_folder(folder)
        if not (folder / "MLmodel").is_file():
            what = (
                "no such folder"
                if not folder.exists()
                else "holds neither a trained vaelab model nor MLmodel"
            )
            raise UserError(
                f"--model {ref}: {what}; pass a models/<variant> folder or a URI such as "
                "models:/vaelab-vae@champion"
            )
    return _load_mlflow_model(ref)


def _tracking_store(ref: str) -> str:
    """The tracking URI ``ref`` resolves against, made MLflow's; a local store is opened first,
    with the registry's patience (a store locked for a moment is waited for)."""
    from vaelab.config.registry_config import RegistryConfig
    from vaelab.tracking import tracking_uri
    from vaelab.tracking_http import open_local_store, quiet_mlflow_env

    quiet_mlflow_env()
    import mlflow

    uri = tracking_uri()
    local = _is_uri(ref) and uri.startswith("sqlite:///")
    if local and not Path(uri.removeprefix("sqlite:///")).is_file():
        # MLflow would create an empty database here and then report the model as unknown.
        raise UserError(
            f"--model {ref}: there is no MLflow registry at {uri}; run from the repository root "
            "(where `dvc repro` made mlflow.db) or set MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if local:
        open_local_store(uri, RegistryConfig())
    return uri


def load_pyfunc(ref: str, model_config: dict[str, Any] | None = None) -> PyFuncModel:
    """Download the MLflow model ``ref`` (a URI, or a folder with ``MLmodel``), vet it
    (:func:`~vaelab.registry.pyfunc.vet_model_folder`) and load that copy as MLflow's pyfunc,
    with ``model_config`` (else the logged one); UserError naming ``ref`` if it can't."""
    from vaelab.config.registry_config import RegistryConfig
    from vaelab.registry.pyfunc import vet_model_folder
    from vaelab.tracking_http import bounded_mlflow_http, display_uri

    uri = _tracking_store(ref)  # first: it quiets MLflow before MLflow is imported
    import mlflow
    from mlflow.exceptions import MlflowException

    log.info("loading %s from %s", ref, display_uri(uri))
    with tempfile.TemporaryDirectory(prefix="vaelab-model-") as scratch:
        try:
            # The registry's default patience: a dead server fails in seconds, not minutes.
            with bounded_mlflow_http(RegistryConfig()):
                local = (
                    Path(ref)
                    if not _is_uri(ref)
                    else Path(
                        mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=scratch)
                    )
                )
        except MlflowException as err:
            raise UserError(
                f"--model {ref}: cannot load it (MLflow tracking URI {display_uri(uri)}): "
                f"{err.message} "
                "(check the name and alias in the MLflow UI, and MLFLOW_TRACKING_URI)"
            ) from err
        # Read the MLmodel before anything of the model runs, then load that same copy.
        vet_model_folder(local, ref)
        try:
            loaded: PyFuncModel = mlflow.pyfunc.load_model(str(local), model_config=model_config)
            return loaded
        except MlflowException as err:
            raise UserError(f"--model {ref}: cannot load it: {err.message}") from err


def vaelab_model(loaded: PyFuncModel, ref: str) -> VariantModel:
    """The vaelab model inside MLflow's pyfunc ``loaded``; UserError if it is another's."""
    from mlflow.exceptions import MlflowException

    from vaelab.registry.pyfunc import VariantModel

    try:
        python_model = loaded.unwrap_python_model()  # type: ignore[no-untyped-call]
    except MlflowException as err:  # another flavour's pyfunc (sklearn, say) has no python model
        raise UserError(
            f"--model {ref}: an MLflow model, but not one vaelab registered ({err.message})"
        ) from err
    if not isinstance(python_model, VariantModel):
        raise UserError(
            f"--model {ref}: an MLflow model, but not one vaelab registered "
            f"({type(python_model).__name__})"
        )
    return python_model


def _load_mlflow_model(ref: str) -> VariantModel:
    return vaelab_model(load_pyfunc(ref), ref)


# --------------------------------------------------------------------------- grids


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of the most nearly square grid with room for ``n`` tiles, cols >= rows."""
    cols = max(1, int(np.ceil(np.sqrt(n))))
    return (max(1, -(-n // cols)), cols)


def montage(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``(K, H, W, C)`` float tiles in [0, 1], K <= rows*cols, → one uint8 image, row-major,
    ``TILE_GAP`` white pixels between and around tiles, unused cells white.

    The result is ``(rows*(H+gap)+gap, cols*(W+gap)+gap)`` plus a channel axis for RGB.
    """
    from skimage.util import montage as skimage_montage

    count, height, width, channels = tiles.shape
    if count > rows * cols:
        raise ValueError(f"{count} tiles do not fit a {rows}x{cols} grid")
    blanks = np.full((rows * cols - count, height, width, channels), GAP_VALUE, dtype=np.float32)
    grid = skimage_montage(
        np.concatenate([tiles.astype(np.float32), blanks]),
        grid_shape=(rows, cols),
        padding_width=TILE_GAP,
        fill=(GAP_VALUE,) * channels,  # one value per channel: a scalar fails for RGB
        channel_axis=-1,
    )
    pixels: np.ndarray = np.rint(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels[..., 0] if channels == 1 else pixels


def write_png(out: Path, pixels: np.ndarray) -> None:
    """Write ``pixels`` (H, W) or (H, W, 3) uint8 as a PNG, atomically."""
    from PIL import Image

    from vaelab.io.atomic import atomic_file

    with atomic_file(out, "wb") as handle:
        Image.fromarray(pixels).save(handle, format="PNG")


def _check_out(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: the grid is written as PNG; give a name ending in .png")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name ending in .png")


# --------------------------------------------------------------------------- commands


def max_images(params_file: Path) -> int:
    """``registry.max_images`` of ``params_file``, or its default where there is no such file
    (a command run outside a vaelab project)."""
    from vaelab.config import load_params
    from vaelab.config.registry_config import RegistryConfig

    if not params_file.is_file():
        return RegistryConfig().max_images
    return load_params(params_file).registry.max_images


def _check_count(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise UserError(
            f"{what}: more than registry.max_images ({limit}) images in one command; ask for "
            f"at most {limit}, or raise registry.max_images in params.yaml"
        )


def generate(
    model_ref: str,
    n: int,
    out: Path,
    *,
    seed: int = 0,
    sampler: str = "normal",
    limit: int | None = None,
) -> tuple[int, int]:
    """Decode ``n`` draws from N(0, I) (``sampler`` normal) or from the model's latent GMM (gmm)
    and write them as one grid; returns (rows, cols). ``limit``: the most images (default:
    ``registry.max_images``'s default)."""
    from vaelab.config.registry_config import RegistryConfig

    if n < 1:
        raise UserError(f"-n {n}: give the number of images to generate, at least 1")
    limit = RegistryConfig().max_images if limit is None else limit
    _check_count(f"-n {n}", n, limit)
    _check_out(out)
    model = open_model(model_ref)
    model.max_images = limit
    if sampler == "gmm" and model.gmm is None:
        raise UserError(
            f"--model {model_ref}: has no latent GMM to sample (only a models/<variant> folder "
            "trained with train.gmm has one, not a registered model); use --sampler normal"
        )
    samples = model.generate(n, seed, sampler)
    rows, cols = grid_shape(n)
    write_png(out, montage(samples, rows, cols))
    log.info(
        "wrote %s: %d samples (seed %d, sampler %s) in a %dx%d grid",
        out,
        n,
        seed,
        sampler,
        rows,
        cols,
    )
    return rows, cols


def load_images(paths: list[Path], config: SavedConfig) -> np.ndarray:
    """Crop and resize image files as ``prepare`` did for the model: ``(N, H, W, C)`` uint8.

    ``config`` is the model's saved config (its ``data`` section, image size and channels).
    """
    from vaelab.data.imaging import ImageSpec, process_image

    crop = config.data.crop
    if crop.method == "landmarks":
        raise UserError(
            "the model was prepared with data.crop.method landmarks, which needs CelebA's landmark "
            "file; vaelab reconstruct cannot crop other images that way"
        )
    spec = ImageSpec(
        size=config.image_size, channels=config.channels, crop=crop, resample=config.data.resample
    )
    images = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        result = process_image(path, spec)
        if result.pixels is None:
            raise UserError(f"{path}: cannot use this image: {result.skipped}")
        images.append(result.pixels)
    return np.stack(images)


def reconstruct(
    model_ref: str, paths: list[Path], out: Path, *, limit: int | None = None
) -> tuple[int, int]:
    """Write the images, cropped like ``prepare``, above their reconstructions; returns
    (rows, cols). ``limit``: the most images (default: ``registry.max_images``'s default)."""
    from vaelab.config.registry_config import RegistryConfig

    limit = RegistryConfig().max_images if limit is None else limit
    _check_count(f"{len(paths)} image files", len(paths), limit)
    _check_out(out)
    model = open_model(model_ref)
    model.max_images = limit
    images = load_images(paths, model.loaded_config)
    recons = model.reconstruct(images)
    inputs = images.astype(np.float32) / 255.0
    count = len(images)
    _, cols = grid_shape(count)
    pairs = -(-count // cols)
    blank = np.full((cols * pairs - count, *inputs.shape[1:]), GAP_VALUE, dtype=np.float32)
    inputs, recons = np.concatenate([inputs, blank]), np.concatenate([recons, blank])
    # Row pairs: a row of inputs, then the same images' reconstructions right below.
    tiles = np.concatenate(
        [
            np.concatenate([inputs[i * cols : (i + 1) * cols], recons[i * cols : (i + 1) * cols]])
            for i in range(pairs)
        ]
    )
    write_png(out, montage(tiles, 2 * pairs, cols))
    log.info("wrote %s: %d image(s) above their reconstructions", out, count)
    return 2 * pairs, cols


def _generate_command(args: argparse.Namespace) -> None:
    generate(
        args.model,
        args.n,
        args.out,
        seed=args.seed,
        sampler=args.sampler,
        limit=max_images(Path(args.params)),
    )


def _reconstruct_command(args: argparse.Namespace) -> None:
    reconstruct(args.model, args.images, args.out, limit=max_images(Path(args.params)))


def _promote_command(args: argparse.Namespace) -> None:
    from vaelab.config import load_params
    from vaelab.registry.promote import promote

    done = promote(
        load_params(args.params),
        args.variant,
        version=args.version,
        alias=args.alias,
        force=args.force,
    )
    was = "no champion" if done.previous is None else f"version {done.previous}"
    fingerprint = f"fingerprint {done.fingerprint}" if done.fingerprint else "no fingerprint"
    print(
        f"{done.name}: champion -> version {done.version} (was {was}); "
        f"serve it as models:/{done.name}@champion (data and evaluation {fingerprint})"
    )
    if not done.checked:
        print(
            "--force: not checked against the workspace's evaluation; if it was evaluated on "
            "other data or settings, the next `dvc repro` moves champion to the best version "
            "evaluated like the current params"
        )


MODEL_HELP = (
    "models:/NAME@ALIAS (e.g. models:/vaelab-vae@champion), models:/NAME/VERSION, "
    "runs:/RUN_ID/VARIANT, or a models/<variant> folder"
)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``generate``, ``reconstruct`` and ``promote`` on the ``vaelab`` command."""
    gen = subparsers.add_parser(
        "generate", help="decode draws from N(0, I) (or the latent GMM) into one PNG grid"
    )
    gen.add_argument("--model", required=True, help=MODEL_HELP)
    gen.add_argument(
        "-n",
        type=int,
        default=64,
        help="number of samples (default: 64; at most registry.max_images of --params)",
    )
    gen.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    gen.add_argument(
        "--out", type=Path, default=Path("samples.png"), help="PNG to write (default: samples.png)"
    )
    gen.add_argument(
        "--sampler",
        choices=["normal", "gmm"],
        default="normal",
        help="normal: z ~ N(0, I) (default); "
        "gmm: the latent GMM saved in a models/<variant> folder",
    )
    gen.set_defaults(func=_generate_command)

    rec = subparsers.add_parser(
        "reconstruct",
        help="crop and resize images as prepare did, and show them above their reconstructions",
    )
    rec.add_argument("--model", required=True, help=MODEL_HELP)
    rec.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files (JPEG, PNG, ...; at most registry.max_images of --params)",
    )
    rec.add_argument(
        "--out",
        type=Path,
        default=Path("reconstructions.png"),
        help="PNG to write (default: reconstructions.png)",
    )
    rec.set_defaults(func=_reconstruct_command)
    _add_promote(subparsers)


def _add_promote(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pro = subparsers.add_parser(
        "promote",
        help="point a registered model's champion alias at a version "
        "(a DVC experiment's exp-<name>, say)",
        description="Move champion of <registry.prefix>-<variant> to --version N, to the version "
        "--alias points at, or (neither) to the version of the weights in models/<variant>/. "
        "A version whose data and evaluation fingerprint does not compare with the workspace's "
        "evaluation is refused unless --force.",
    )
    pro.add_argument(
        "variant", help="a variant name (the registered model is <registry.prefix>-<variant>)"
    )
    which = pro.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="the version number to promote")
    which.add_argument(
        "--alias", help="promote the version this alias points at, e.g. exp-<experiment name>"
    )
    pro.add_argument(
        "--force",
        action="store_true",
        help="promote it even if it was evaluated on other data or settings than the workspace's "
        "evaluation (metrics/detail/eval/<variant>.json)",
    )
    pro.set_defaults(func=_promote_command)
