"""vaelab's MLflow pyfunc: one trained variant behind one ``predict`` with three modes.

The model is logged as *code* (MLflow's models-from-code, see :mod:`.model_code`), with
the variant's ``model.pt`` (a state dict, loaded ``weights_only``) and ``config.json`` as
artifacts, so loading it never unpickles anything.

``predict(context, model_input, params)`` with ``params["mode"]``:

- ``reconstruct`` (default): images ``(N, H, W, C)`` — uint8 in 0..255 (any integer
  dtype, as JSON numbers arrive) or float in [0, 1]; ``(N, H, W)`` for grey models —
  → reconstructions ``(N, H, W, C)`` float32 in [0, 1].
- ``encode``: images → latents ``(N, latent_dim)`` float32 (the posterior mean for VAEs,
  the flattened code for plain autoencoders).
- ``generate``: latents ``(N, latent_dim)`` → images ``(N, H, W, C)``; or, with an empty
  input and ``params["n"] > 0``, ``n`` draws from N(0, I) made with ``params["seed"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from vaelab.eval.inference import decode_all, to_numpy
from vaelab.models.base import Autoencoder
from vaelab.models.saved import SavedConfig, config_file, load_files, resolve, weights_file
from vaelab.runtime import select_runtime

WEIGHTS_ARTIFACT = "weights"
CONFIG_ARTIFACT = "config"
MODES = ("reconstruct", "encode", "generate")
DEFAULT_PARAMS: dict[str, Any] = {"mode": "reconstruct", "n": 0, "seed": 0}
# Images per forward pass: bounds memory for large requests without slowing small ones.
BATCH_SIZE = 256


def model_signature(image_size: int, channels: int) -> ModelSignature:
    """The output of the image modes (reconstruct, generate: ``(N, H, W, C)`` float32 in
    [0, 1]) and the params; no input schema.

    MLflow enforces an input schema on every ``predict``, before the model sees the data,
    and a tensor spec fixes the rank and dtype exactly (``_enforce_tensor_spec``; every
    TensorSpec is required, so named alternatives do not work either). One spec cannot
    admit the images of two modes (uint8 ``(N, H, W, C)``, float ``[0, 1]``, ``(N, H, W)``
    for grey) and the latents ``(N, latent_dim)`` or empty input of ``generate``: so
    ``predict`` checks the input itself, and :func:`input_metadata` states it in the
    MLmodel file. The params schema is what lets ``/invocations`` accept
    ``{"params": {"mode": ...}}``; the output schema is not enforced (``encode`` returns
    latents)."""
    return ModelSignature(
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, image_size, image_size, channels), "images")]),
        params=ParamSchema(
            [
                ParamSpec("mode", "string", DEFAULT_PARAMS["mode"]),
                ParamSpec("n", "long", DEFAULT_PARAMS["n"]),
                ParamSpec("seed", "long", DEFAULT_PARAMS["seed"]),
            ]
        ),
    )


def input_metadata(image_size: int, channels: int, latent_dim: int) -> dict[str, Any]:
    """What each mode takes and returns, for the MLmodel ``metadata`` (the signature cannot say it)."""
    images = [-1, image_size, image_size, channels]
    return {
        "inputs": {
            "reconstruct": {"shape": images, "dtype": "uint8", "also": "float32 in [0, 1]; (N, H, W) for grey"},
            "encode": {"shape": images, "dtype": "uint8", "also": "float32 in [0, 1]; (N, H, W) for grey"},
            "generate": {"shape": [-1, latent_dim], "dtype": "float32", "also": "empty input with params.n > 0"},
        },
        "outputs": {
            "reconstruct": {"shape": images, "dtype": "float32"},
            "encode": {"shape": [-1, latent_dim], "dtype": "float32"},
            "generate": {"shape": images, "dtype": "float32"},
        },
    }


def _bad_input(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE makes the scoring server answer 400, not 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _as_array(model_input: Any) -> np.ndarray:
    """The request body as one array: MLflow hands over an ndarray, a list, or (for
    ``dataframe_*`` payloads) a DataFrame, depending on how the caller sent it."""
    if model_input is None:
        return np.zeros((0,), dtype=np.float32)
    if hasattr(model_input, "to_numpy"):
        model_input = model_input.to_numpy()
    try:
        return np.asarray(model_input)
    except ValueError as err:
        raise _bad_input(f"the input is not a rectangular array: {err}") from err


class VaelabPyfunc(PythonModel):
    """A trained vaelab variant as an MLflow pyfunc (see the module docstring)."""

    def __init__(self) -> None:
        self.model: Autoencoder | None = None
        self.config: SavedConfig | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ loading

    def load_context(self, context: Any) -> None:
        self.load_files(Path(context.artifacts[WEIGHTS_ARTIFACT]), Path(context.artifacts[CONFIG_ARTIFACT]))

    def load_files(self, weights: Path, config: Path) -> None:
        """Rebuild the variant from its state dict and config.json (weights only, strict),
        on the GPU when there is one."""
        model, self.config = load_files(weights, config)
        self.device = select_runtime("auto", key="serving").device
        self.model = model.to(self.device).eval()

    @classmethod
    def from_folder(cls, folder: Path) -> VaelabPyfunc:
        """The same pyfunc straight from a ``models/<variant>/`` folder (its first seed) or
        one replicate's ``seed<k>/`` folder, without MLflow."""
        folder = resolve(folder)
        pyfunc = cls()
        pyfunc.load_files(weights_file(folder), config_file(folder))
        return pyfunc

    # ------------------------------------------------------------------ predict

    # np.ndarray is the one hint MLflow 3 takes without deriving an input schema from it
    # (no schema covers both images and latents); a list/DataFrame is converted below.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("VaelabPyfunc.predict called before load_context / load_files")
        settings = {**DEFAULT_PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
        mode = settings["mode"]
        if mode not in MODES:
            raise _bad_input(f"params.mode {mode!r} is not one of {', '.join(MODES)}")
        data = _as_array(model_input)
        with torch.inference_mode():
            if mode == "generate":
                return self._generate(data, int(settings["n"]), int(settings["seed"]))
            images = self._images_to_tensor(data)
            outputs = [self._run(mode, images[i : i + BATCH_SIZE]) for i in range(0, len(images), BATCH_SIZE)]
        if not outputs:
            shape = (0, self.model.latent_dim) if mode == "encode" else (0, *self._hwc)
            return np.zeros(shape, dtype=np.float32)
        return np.concatenate(outputs)

    @property
    def _hwc(self) -> tuple[int, int, int]:
        size, channels = self.config.image_size, self.config.channels
        return (size, size, channels)

    def _run(self, mode: str, batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(self.device)
        if mode == "encode":
            return self.model.encode(batch)["z"].flatten(1).float().cpu().numpy()
        return to_numpy(self.model(batch)["recon"])

    def _images_to_tensor(self, data: np.ndarray) -> torch.Tensor:
        """``(N, H, W, C)`` (or ``(N, H, W)`` for grey) uint8/int or [0, 1] float → ``(N, C, H, W)`` float32."""
        size, _, channels = self._hwc
        if data.size == 0:
            return torch.zeros((0, channels, size, size))
        if data.ndim == 3 and channels == 1:
            data = data[..., np.newaxis]
        if data.ndim != 4 or data.shape[1:] != self._hwc:
            raise _bad_input(
                f"expected images of shape (N, {size}, {size}, {channels}) for this model, got {data.shape}"
            )
        if np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
            if data.min() < 0 or data.max() > 255:
                raise _bad_input(f"integer images must lie in 0..255, got {data.min()}..{data.max()}")
            pixels = data.astype(np.float32) / 255.0
        elif np.issubdtype(data.dtype, np.floating):
            if not np.isfinite(data).all() or data.min() < 0.0 or data.max() > 1.0:
                raise _bad_input(
                    f"float images must lie in [0, 1], got {np.nanmin(data):g}..{np.nanmax(data):g}; "
                    "send uint8 pixels or divide by 255"
                )
            pixels = data.astype(np.float32)
        else:
            raise _bad_input(f"images must be numbers, got dtype {data.dtype}")
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))

    def _generate(self, data: np.ndarray, n: int, seed: int) -> np.ndarray:
        latent_dim = self.model.latent_dim
        if data.size and n:
            raise _bad_input(f"generate takes latents or params.n, not both (got {data.shape[0]} latents and n={n})")
        if data.size:
            if data.ndim != 2 or data.shape[1] != latent_dim:
                raise _bad_input(f"expected latents of shape (N, {latent_dim}) for this model, got {data.shape}")
            z = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
            z = z.reshape(len(z), *self.model.latent_shape)
            return to_numpy(decode_all(self.model, z, BATCH_SIZE))
        if n <= 0:
            raise _bad_input("generate needs latents (N, latent_dim) as input, or params.n > 0 with an empty input")
        # A CPU generator: the same seed gives the same draws on any device.
        generator = torch.Generator().manual_seed(seed)
        chunks = [
            to_numpy(self.model.sample(min(BATCH_SIZE, n - start), generator=generator))
            for start in range(0, n, BATCH_SIZE)
        ]
        return np.concatenate(chunks)

