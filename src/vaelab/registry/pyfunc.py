"""vaelab's MLflow pyfuncs: one trained variant as two logged models with exact signatures.

Both are logged as *code* (MLflow's models-from-code, see :mod:`.model_code` and
:mod:`.decoder_code`), with the variant's ``model.pt`` (a state dict, loaded
``weights_only``) and ``config.json`` as artifacts, so loading them never unpickles anything.

- :class:`VaelabPyfunc`, logged as ``<variant>`` and registered: images
  ``(N, H, W, C)`` of integer pixels 0..255 → with ``params["mode"]``
  ``reconstruct`` (default): reconstructions ``(N, H, W, C)`` float32 in [0, 1];
  ``encode``: latents ``(N, latent_dim)`` float32 (the posterior mean for VAEs, the
  flattened code for plain autoencoders).
- :class:`VaelabDecoder`, logged as ``<variant>-decoder`` in the same run: latents
  ``(N, latent_dim)`` real numbers → images ``(N, H, W, C)`` float32 in [0, 1].

Neither signature has an input schema (outputs and the ``mode`` param only): over REST,
MLflow 3 parses the JSON straight into the schema's dtype (``np.array(data, dtype=...)`` in
``mlflow.utils.proto_json_utils.convert_data_type``), so a uint8 schema silently turned a
[0, 1]-normalised face (0.5 everywhere) into a black one; and a schema failure, like any
``MlflowException`` from ``predict``, has the scoring server quote the input array in its
400. Without one, ``predict`` sees the request's own numbers and checks shape, dtype, range
and count itself, answering 400s (:class:`RequestError`) that say what was expected and
what came: shape and dtype, never the data. Images and latents are still two models, as
one ``predict`` cannot tell a batch of latents from a batch of images by its numbers alone.

Each call handles at most ``max_images`` images or latents (``registry.max_images``,
recorded as the logged model's ``model_config`` at register; ``SERVING_MODEL_CONFIG`` or
``MLFLOW_PYFUNC_INFERENCE_CONFIG`` override it when serving); more is refused before any
work, and what is accepted runs through the network ``BATCH_SIZE`` at a time.

Params other than ``mode`` cannot be refused here: MLflow's ``_enforce_params_schema`` drops
every key the params schema does not name (with a warning in the server's log) before
``predict`` is called, and a model without a params schema gets no params at all.
``vaelab serve`` (:mod:`.serve`) refuses them before MLflow sees the request.

Both classes also offer the plain methods :meth:`VariantModel.reconstruct`,
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

import json
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

from vaelab.config.registry_config import RegistryConfig
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
# The logged model's model_config key of registry.max_images.
MAX_IMAGES = "max_images"
MAX_IMAGES_SETTING = "registry.max_images"


def decoder_name(variant: str) -> str:
    """The decoder's logged-model name, next to the variant's own in its register run."""
    return variant + DECODER_SUFFIX


def _images_spec(image_size: int, channels: int, dtype: str) -> TensorSpec:
    return TensorSpec(np.dtype(dtype), (-1, image_size, image_size, channels))


def image_signature(image_size: int, channels: int) -> ModelSignature:
    """:class:`VaelabPyfunc`: float32 images out (``reconstruct``; the output schema is not
    enforced, so ``encode`` may return latents), and ``mode``. No input schema: ``predict``
    checks the images itself (see the module's docstring)."""
    return ModelSignature(
        outputs=Schema([_images_spec(image_size, channels, "float32")]),
        params=ParamSchema([ParamSpec("mode", "string", DEFAULT_MODE)]),
    )


def decoder_signature(image_size: int, channels: int, latent_dim: int) -> ModelSignature:
    """:class:`VaelabDecoder`: float32 images out; the latents are checked by ``predict``."""
    return ModelSignature(outputs=Schema([_images_spec(image_size, channels, "float32")]))


def serving_config(cfg: RegistryConfig) -> dict[str, Any]:
    """The logged model's ``model_config``: the request limit the server enforces."""
    return {MAX_IMAGES: cfg.max_images}


class RequestError(MlflowException):
    """A refused request: a 400 whose body is this message alone.

    The scoring server prefixes any ``MlflowException`` from ``predict`` with the input array
    (``Failed to predict data '<array>'``, up to some KB of numbers) before serializing it;
    the message here already says the input's shape and dtype, so the reply keeps it as
    raised.
    """

    def __init__(self, message: str) -> None:
        # INVALID_PARAMETER_VALUE makes the scoring server answer 400, not 500.
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)
        self.reply = message

    def serialize_as_json(self) -> str:
        return json.dumps({"error_code": self.error_code, "message": self.reply})


def _bad_input(message: str) -> RequestError:
    return RequestError(message)


def configured_limit(model_config: dict[str, Any] | None) -> int:
    """``max_images`` of a logged model's ``model_config`` (the default when it has none:
    a version logged before the limit)."""
    value = (model_config or {}).get(MAX_IMAGES, RegistryConfig().max_images)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MlflowException(
            f"model_config {MAX_IMAGES} must be a whole number >= 1, got {value!r} "
            f"(logged from {MAX_IMAGES_SETTING}; SERVING_MODEL_CONFIG overrides it)"
        )
    return value


class VariantModel(PythonModel):
    """A trained vaelab variant: loading, and the four operations as plain methods."""

    def __init__(self) -> None:
        self.model: Autoencoder | None = None
        self.config: SavedConfig | None = None
        self.device = torch.device("cpu")
        # The latent GMM of a model loaded from its folder (from_folder), if it has one; the
        # logged pyfunc's artifacts are the weights and config alone.
        self.gmm: LatentGMM | None = None
        # The most images or latents one call takes (registry.max_images).
        self.max_images = RegistryConfig().max_images

    # ------------------------------------------------------------------ loading

    def load_context(self, context: Any) -> None:
        self.max_images = configured_limit(context.model_config)
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

    def reconstruct(self, images: Any) -> np.ndarray:
        """``(N, H, W, C)`` pixels 0..255 → ``(N, H, W, C)`` float32 reconstructions in [0, 1]."""
        pixels = self._pixels(images)
        return self._batched(
            pixels, lambda batch: to_numpy(self._trained(batch)["recon"]), self.image_shape
        )

    def encode(self, images: Any) -> np.ndarray:
        """``(N, H, W, C)`` pixels 0..255 → ``(N, latent_dim)`` float32 (the posterior mean for
        VAEs)."""
        pixels = self._pixels(images)
        return self._batched(
            pixels,
            lambda batch: self._trained.encode(batch)["z"].flatten(1).float().cpu().numpy(),
            (self._trained.latent_dim,),
        )

    def decode(self, latents: Any) -> np.ndarray:
        """``(N, latent_dim)`` real numbers → ``(N, H, W, C)`` float32 images in [0, 1]."""
        model = self._trained
        latents = _as_array(latents, "latents")
        if latents.ndim >= 1:
            self.check_count(len(latents), "latents")
        if latents.ndim != 2 or latents.shape[1] != model.latent_dim or not _is_real(latents):
            raise _bad_input(
                f"expected latents of shape (N, {model.latent_dim}), real numbers, for this "
                f"model; got {_described(latents)}"
            )
        if not np.isfinite(latents).all():
            raise _bad_input(
                f"latents must be finite numbers; got {_described(latents)} with NaN or inf"
            )
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
        self.check_count(n, "images")
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

    def _pixels(self, images: Any) -> torch.Tensor:
        """``(N, H, W, C)`` whole numbers 0..255 → ``(N, C, H, W)`` float32 in [0, 1]."""
        self._trained  # noqa: B018 - fails clearly before load_files
        images = _as_array(images, "images")
        if images.ndim >= 1:
            self.check_count(len(images), "images")
        size, _, channels = self.image_shape
        if images.ndim != 4 or images.shape[1:] != self.image_shape:
            raise _bad_input(
                f"expected images of shape (N, {size}, {size}, {channels}) for this model, "
                f"pixels 0..255; got {_described(images)}"
            )
        pixels = _whole_pixels(images).astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))

    def check_count(self, count: int, what: str) -> None:
        """Refuse more than ``max_images`` images or latents in one call, before any work."""
        if count > self.max_images:
            raise _bad_input(
                f"{count} {what} in one call: the limit is {self.max_images} "
                f"({MAX_IMAGES_SETTING} in params.yaml, the logged model's model_config "
                f"{MAX_IMAGES!r}; SERVING_MODEL_CONFIG='{{\"{MAX_IMAGES}\": N}}' sets it for "
                "`mlflow models serve`); send them in smaller batches"
            )

    def _batched(self, pixels: torch.Tensor, step: Any, item_shape: tuple[int, ...]) -> np.ndarray:
        with torch.inference_mode():
            outputs = [
                step(pixels[i : i + BATCH_SIZE].to(self.device))
                for i in range(0, len(pixels), BATCH_SIZE)
            ]
        return np.concatenate(outputs) if outputs else np.zeros((0, *item_shape), dtype=np.float32)


class VaelabPyfunc(VariantModel):
    """The registered model: images in; ``params["mode"]`` picks reconstruct or encode."""

    # np.ndarray: the signature is given explicitly at log time (see image_signature).
    def predict(
        self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        mode = (params or {}).get("mode") or DEFAULT_MODE
        if mode not in IMAGE_MODES:
            raise _bad_input(
                f"params.mode {mode!r} is not one of {', '.join(IMAGE_MODES)} "
                f"(decode latents with the logged model <variant>{DECODER_SUFFIX})"
            )
        return self.reconstruct(model_input) if mode == "reconstruct" else self.encode(model_input)


def _described(array: np.ndarray) -> str:
    """What a refused input was, for its message: dtype and shape, never the numbers."""
    return f"{array.dtype} array of shape {array.shape}"


def _as_array(data: Any, what: str) -> np.ndarray:
    """The request's numbers as an array: over REST, MLflow hands ``predict`` the JSON as
    parsed (int64 or float64); in Python, an array, a list or a DataFrame."""
    if hasattr(data, "to_numpy"):
        data = data.to_numpy()
    try:
        return np.asarray(data)
    except ValueError as err:  # a ragged list
        raise _bad_input(f"{what} must be a rectangular array of numbers ({err})") from err


def _is_real(array: np.ndarray) -> bool:
    """Integers or floats (not booleans, strings or objects)."""
    return bool(np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))


def _whole_pixels(images: np.ndarray) -> np.ndarray:
    """``images`` as uint8, if every value is a whole number 0..255; else a 400 saying which.

    JSON pixels arrive as int64, or float64 when one of them is written with a decimal point:
    ``128.0`` is pixel 128, but ``0.5`` (a [0, 1]-normalised image) is refused, not rounded.
    """
    if images.dtype == np.uint8:
        return images
    if not _is_real(images):
        raise _bad_input(f"images must be whole-number pixels 0..255; got {_described(images)}")
    if images.size == 0:
        return images.astype(np.uint8)
    if np.issubdtype(images.dtype, np.floating):
        fractional = images != np.round(images)  # NaN too
        if fractional.any():
            example = images[fractional].flat[0]
            raise _bad_input(
                f"images must be whole-number pixels 0..255; got {_described(images)} with "
                f"non-integer values such as {example:g} (a [0, 1]-normalised image? send "
                "round(255 * x) as integers)"
            )
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise _bad_input(
            f"images must be whole-number pixels 0..255; got {_described(images)} with values "
            f"from {low:g} to {high:g}"
        )
    return images.astype(np.uint8)


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
