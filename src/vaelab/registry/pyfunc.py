"""vaelab's MLflow pyfuncs: one trained variant as two logged models with exact signatures.

Both are logged as *code* (MLflow's models-from-code, see :mod:`.model_code` and
:mod:`.decoder_code`), with the variant's ``model.pt`` (a state dict, loaded
``weights_only``) and ``config.json`` as artifacts, so loading them never unpickles anything.

- :class:`VaelabPyfunc`, logged as ``<variant>`` and registered: images
  ``(N, H, W, C)`` uint8 → with ``params["mode"]``
  ``reconstruct`` (default): reconstructions ``(N, H, W, C)`` float32 in [0, 1];
  ``encode``: latents ``(N, latent_dim)`` float32 (the posterior mean for VAEs, the
  flattened code for plain autoencoders).
- :class:`VaelabDecoder`, logged as ``<variant>-decoder`` in the same run: latents
  ``(N, latent_dim)`` float32 → images ``(N, H, W, C)`` float32 in [0, 1].

MLflow enforces a signature's input schema before ``predict`` sees the data, and a tensor
spec fixes rank and dtype exactly, so images and latents cannot share one model: hence
two. Both classes also offer the plain methods :meth:`VariantModel.reconstruct`,
:meth:`~VariantModel.encode`, :meth:`~VariantModel.decode` and
:meth:`~VariantModel.generate` (``n`` draws from N(0, I) with a seed, or from the latent GMM
saved with a model loaded from its folder), which the CLI calls on
``loaded.unwrap_python_model()``; they check their input as the schemas do.

Vetting (:func:`vet_model_folder`): a downloaded MLflow model is checked before anything
of it runs, so that only vaelab's own pyfuncs load. Loading an MLflow pyfunc runs code
the model brings: a pickled ``PythonModel`` is unpickled (which can call anything), a
models-from-code model executes its shipped ``.py`` file, ``code_paths`` put the model's
folders first on ``sys.path``, and another flavour's ``loader_module`` runs its own loader
(often unpickling too). On a shared tracking server anyone who can log a model can name it
``vaelab-<variant>``. So before ``mlflow.pyfunc.load_model`` the commands read the model's
``MLmodel`` and accept only what vaelab's ``register`` writes:

- the one flavour ``python_function``, with MLflow's models-from-code loader;
- a code file byte-identical to one of vaelab's installed model files
  (:mod:`.model_code`, :mod:`.decoder_code`), so the code that runs is the installed code;
- no ``code`` paths, no pickled ``python_model``;
- exactly the ``weights`` (``model.pt``, loaded ``weights_only``) and ``config`` (JSON)
  artifacts, inside the model's folder.

Anything else is a :class:`UserError` saying what was found; nothing of the model has run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from vaelab.errors import UserError
from vaelab.models.inference import decode_all, to_numpy
from vaelab.models.interface import Autoencoder
from vaelab.models.latent_gmm import LatentGMM, sample_images
from vaelab.models.saved import (
    SavedConfig,
    config_file,
    load_files,
    load_gmm,
    resolve,
    weights_file,
)
from vaelab.runtime import select_runtime

WEIGHTS_ARTIFACT = "weights"
CONFIG_ARTIFACT = "config"
IMAGE_MODES = ("reconstruct", "encode")
DEFAULT_MODE = "reconstruct"
DECODER_SUFFIX = "-decoder"
# generate's sources of latents: N(0, I), or the ex-post GMM saved in the model's folder.
SAMPLERS = ("normal", "gmm")
# Images per forward pass: bounds memory for large requests without slowing small ones.
BATCH_SIZE = 256


def decoder_name(variant: str) -> str:
    """The decoder's logged-model name, next to the variant's own in its register run."""
    return variant + DECODER_SUFFIX


def _images_spec(image_size: int, channels: int, dtype: str) -> TensorSpec:
    return TensorSpec(np.dtype(dtype), (-1, image_size, image_size, channels))


def image_signature(image_size: int, channels: int) -> ModelSignature:
    """:class:`VaelabPyfunc`: uint8 images in, float32 images out (``reconstruct``; the
    output schema is not enforced, so ``encode`` may return latents), and ``mode``."""
    return ModelSignature(
        inputs=Schema([_images_spec(image_size, channels, "uint8")]),
        outputs=Schema([_images_spec(image_size, channels, "float32")]),
        params=ParamSchema([ParamSpec("mode", "string", DEFAULT_MODE)]),
    )


def decoder_signature(image_size: int, channels: int, latent_dim: int) -> ModelSignature:
    """:class:`VaelabDecoder`: float32 latents in, float32 images out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, latent_dim))]),
        outputs=Schema([_images_spec(image_size, channels, "float32")]),
    )


def _bad_input(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE makes the scoring server answer 400, not 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class VariantModel(PythonModel):
    """A trained vaelab variant: loading, and the four operations as plain methods."""

    def __init__(self) -> None:
        self.model: Autoencoder | None = None
        self.config: SavedConfig | None = None
        self.device = torch.device("cpu")
        # The latent GMM of a model loaded from its folder (from_folder), if it has one; the
        # logged pyfunc's artifacts are the weights and config alone.
        self.gmm: LatentGMM | None = None

    # ------------------------------------------------------------------ loading

    def load_context(self, context: Any) -> None:
        self.load_files(
            Path(context.artifacts[WEIGHTS_ARTIFACT]), Path(context.artifacts[CONFIG_ARTIFACT])
        )

    def load_files(self, weights: Path, config: Path) -> None:
        """Rebuild the variant from its state dict and config.json (weights only, strict),
        on the GPU when there is one."""
        model, self.config = load_files(weights, config)
        self.device = select_runtime("auto", key="serving").device
        self.model = model.to(self.device).eval()

    @classmethod
    def from_folder(cls, folder: Path) -> VariantModel:
        """The same model straight from a ``models/<variant>/`` folder (its first seed) or
        one replicate's ``seed<k>/`` folder, without MLflow."""
        folder = resolve(folder)
        loaded = cls()
        loaded.load_files(weights_file(folder), config_file(folder))
        loaded.gmm = load_gmm(folder)
        return loaded

    @property
    def _trained(self) -> Autoencoder:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} used before load_context / load_files")
        return self.model

    @property
    def loaded_config(self) -> SavedConfig:
        """The loaded variant's saved config (its data section, image size and channels)."""
        if self.config is None:
            raise RuntimeError(f"{type(self).__name__} used before load_context / load_files")
        return self.config

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of this model's images."""
        size, channels = self.loaded_config.image_size, self.loaded_config.channels
        return (size, size, channels)

    # ------------------------------------------------------------------ operations

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, C)`` uint8 → ``(N, H, W, C)`` float32 reconstructions in [0, 1]."""
        pixels = self._pixels(images)
        return self._batched(
            pixels, lambda batch: to_numpy(self._trained(batch)["recon"]), self.image_shape
        )

    def encode(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, C)`` uint8 → ``(N, latent_dim)`` float32 (the posterior mean for VAEs)."""
        pixels = self._pixels(images)
        return self._batched(
            pixels,
            lambda batch: self._trained.encode(batch)["z"].flatten(1).float().cpu().numpy(),
            (self._trained.latent_dim,),
        )

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """``(N, latent_dim)`` float → ``(N, H, W, C)`` float32 images in [0, 1]."""
        model = self._trained
        latents = np.asarray(latents)
        if (
            latents.ndim != 2
            or latents.shape[1] != model.latent_dim
            or not np.issubdtype(latents.dtype, np.floating)
        ):
            raise _bad_input(
                f"expected float latents of shape (N, {model.latent_dim}) for this model, "
                f"got {latents.dtype} {latents.shape}"
            )
        if not np.isfinite(latents).all():
            raise _bad_input("latents must be finite numbers")
        if len(latents) == 0:
            return np.zeros((0, *self.image_shape), dtype=np.float32)
        z = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).reshape(
            len(latents), *model.latent_shape
        )
        with torch.inference_mode():
            return to_numpy(decode_all(model, z, BATCH_SIZE))

    def generate(self, n: int, seed: int = 0, sampler: str = "normal") -> np.ndarray:
        """``n`` images decoded from draws made with ``seed``: ``(n, H, W, C)`` float32.
        ``sampler``: ``normal``, z ~ N(0, I); ``gmm``, the latent GMM saved with the model
        (loaded from its folder)."""
        if n < 1:
            raise _bad_input(f"generate needs n >= 1, got {n}")
        if sampler not in SAMPLERS:
            raise _bad_input(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
        gmm = self.gmm
        if sampler == "gmm" and gmm is None:
            raise _bad_input(
                "this model has no latent GMM (a models/<variant> folder trained with train.gmm "
                "has one; a registered model carries its weights and config only)"
            )
        # A CPU generator: the same seed gives the same draws on any device.
        generator = torch.Generator().manual_seed(seed)
        model = self._trained

        def draw(count: int) -> torch.Tensor:
            if sampler == "gmm" and gmm is not None:
                return sample_images(model, gmm, count, generator)
            return model.sample(count, generator=generator)

        with torch.inference_mode():
            chunks = [
                to_numpy(draw(min(BATCH_SIZE, n - start))) for start in range(0, n, BATCH_SIZE)
            ]
        return np.concatenate(chunks)

    # ------------------------------------------------------------------ helpers

    def _pixels(self, images: np.ndarray) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 → ``(N, C, H, W)`` float32 in [0, 1] (what the schema admits)."""
        self._trained  # noqa: B018 - fails clearly before load_files
        images = np.asarray(images)
        size, _, channels = self.image_shape
        if images.dtype != np.uint8:
            raise _bad_input(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise _bad_input(
                f"expected images of shape (N, {size}, {size}, {channels}) for this model, "
                f"got {images.shape}"
            )
        pixels = images.astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))

    def _batched(self, pixels: torch.Tensor, step: Any, item_shape: tuple[int, ...]) -> np.ndarray:
        with torch.inference_mode():
            outputs = [
                step(pixels[i : i + BATCH_SIZE].to(self.device))
                for i in range(0, len(pixels), BATCH_SIZE)
            ]
        return np.concatenate(outputs) if outputs else np.zeros((0, *item_shape), dtype=np.float32)


class VaelabPyfunc(VariantModel):
    """The registered model: images in; ``params["mode"]`` picks reconstruct or encode."""

    # np.ndarray: the input schema is given explicitly at log time (see image_signature).
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        mode = (params or {}).get("mode") or DEFAULT_MODE
        if mode not in IMAGE_MODES:
            raise _bad_input(
                f"params.mode {mode!r} is not one of {', '.join(IMAGE_MODES)} "
                f"(decode latents with the logged model <variant>{DECODER_SUFFIX})"
            )
        images = _legacy_images(model_input)
        return self.reconstruct(images) if mode == "reconstruct" else self.encode(images)


def _legacy_images(model_input: Any) -> Any:
    """Versions logged before the input schema get no enforcement, so JSON pixels arrive
    as int64 (or a list, or a DataFrame): integers in 0..255 become the uint8 the schema
    would have made. Anything else goes on unchanged, to be refused by the checks."""
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    array = np.asarray(model_input) if isinstance(model_input, list) else model_input
    if (
        isinstance(array, np.ndarray)
        and array.size
        and np.issubdtype(array.dtype, np.integer)
        and array.dtype != np.uint8
        and array.min() >= 0
        and array.max() <= 255
    ):
        return array.astype(np.uint8)
    return array


class VaelabDecoder(VariantModel):
    """The variant's decoder, logged next to it: latents in, images out."""

    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.decode(model_input)


# --------------------------------------------------------------------------- vetting

CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
PYFUNC = "python_function"
# The files register logs as models-from-code, next to this module.
TRUSTED_CODE = ("model_code.py", "decoder_code.py")
ARTIFACT_FILES = {"weights": "model.pt", "config": "config.json"}


def _refuse(ref: str, why: str) -> UserError:
    return UserError(
        f"--model {ref}: refused before loading: {why}; vaelab loads only the models its "
        "`register` stage logs (a vaelab models-from-code pyfunc with weights-only artifacts)"
    )


def _read_mlmodel(folder: Path, ref: str) -> dict[str, Any]:
    path = folder / "MLmodel"
    if not path.is_file():
        raise _refuse(ref, "it has no MLmodel file")
    try:
        content = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise _refuse(ref, f"its MLmodel file is not YAML ({err})") from err
    if not isinstance(content, dict):
        raise _refuse(ref, "its MLmodel file is not a mapping")
    return content


def _inside(folder: Path, relative: Any) -> Path | None:
    """``folder / relative`` when that is a file inside ``folder`` (no ``..``, no absolute path,
    no link out)."""
    if not isinstance(relative, str) or not relative:
        return None
    root = folder.resolve()
    target = (folder / relative).resolve()
    return target if target.is_file() and target.is_relative_to(root) else None


def vet_model_folder(folder: Path, ref: str) -> None:
    """Raise :class:`UserError` unless ``folder`` (a downloaded MLflow model) is a vaelab pyfunc."""
    mlmodel = _read_mlmodel(folder, ref)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict) or set(flavors) != {PYFUNC}:
        names = ", ".join(sorted(flavors)) if isinstance(flavors, dict) else "none"
        raise _refuse(ref, f"its flavours are {names}, not only {PYFUNC}")
    pyfunc = flavors[PYFUNC]
    if not isinstance(pyfunc, dict):
        raise _refuse(ref, f"its {PYFUNC} flavour is not a mapping")
    loader = pyfunc.get("loader_module")
    if loader != CODE_LOADER:
        kind = "a pickled python model" if "python_model" in pyfunc else f"loader {loader!r}"
        raise _refuse(ref, f"it is {kind}, not a models-from-code pyfunc ({CODE_LOADER})")
    if pyfunc.get("python_model") is not None:
        raise _refuse(ref, "it carries a pickled python_model")
    if pyfunc.get("code"):
        raise _refuse(
            ref, f"it ships code paths ({pyfunc['code']!r}) that would go first on sys.path"
        )

    code_path = pyfunc.get("model_code_path")
    name = Path(code_path).name if isinstance(code_path, str) else ""
    shipped = _inside(folder, name) if name in TRUSTED_CODE else None
    if shipped is None:
        raise _refuse(
            ref, f"its model code {code_path!r} is not one of vaelab's ({', '.join(TRUSTED_CODE)})"
        )
    installed = Path(__file__).with_name(name)
    if shipped.read_bytes() != installed.read_bytes():
        raise _refuse(ref, f"its {name} differs from the installed vaelab's {installed}")

    artifacts = pyfunc.get("artifacts")
    if not isinstance(artifacts, dict) or set(artifacts) != set(ARTIFACT_FILES):
        found = ", ".join(sorted(artifacts)) if isinstance(artifacts, dict) else "none"
        raise _refuse(ref, f"its artifacts are {found}, not {', '.join(sorted(ARTIFACT_FILES))}")
    for key, filename in ARTIFACT_FILES.items():
        entry = artifacts[key]
        relative = entry.get("path") if isinstance(entry, dict) else None
        if (
            not isinstance(relative, str)
            or _inside(folder, relative) is None
            or Path(relative).name != filename
        ):
            raise _refuse(
                ref, f"its {key} artifact {relative!r} is not a {filename} inside the model"
            )
