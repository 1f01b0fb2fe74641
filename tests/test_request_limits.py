"""registry.max_images: every call that takes a count or a batch refuses more than it, with one
message and before any work (issue 26, item 2), and runs what it accepts in chunks."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from tests.support.trained import save_variant, tiny_params, workspace_fixture, write_eval
from vaelab.registry import pyfunc
from vaelab.registry.pyfunc import RequestError, VariantModel
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

LIMIT_MESSAGE = r"^{n} {what} in one call: the limit is {limit} \(registry\.max_images in params"


def test_each_operation_refuses_more_than_max_images(workspace):
    model = VariantModel.from_folder(save_variant(workspace.models, "vae"))
    model.max_images = 3
    pixels = np.zeros((4, 16, 16, 1), dtype=np.uint8)
    for call, what in [
        (lambda: model.reconstruct(pixels), "images"),
        (lambda: model.encode(pixels), "images"),
        (lambda: model.decode(np.zeros((4, 4), dtype=np.float32)), "latents"),
        (lambda: model.generate(4), "images"),
    ]:
        with pytest.raises(RequestError, match=LIMIT_MESSAGE.format(n=4, what=what, limit=3)):
            call()
    assert model.generate(3).shape == (3, 16, 16, 1)
    assert model.encode(pixels[:3]).shape == (3, 4)


def test_what_is_accepted_runs_in_chunks(workspace, monkeypatch):
    model = VariantModel.from_folder(save_variant(workspace.models, "vae"))
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 16, 16, 1), dtype=np.uint8)
    whole = model.reconstruct(pixels)
    sizes: list[int] = []
    forward = model._trained.forward

    def counted(batch, *args, **kwargs):
        sizes.append(len(batch))
        return forward(batch, *args, **kwargs)

    monkeypatch.setattr(pyfunc, "BATCH_SIZE", 2)
    monkeypatch.setattr(model._trained, "forward", counted)
    np.testing.assert_allclose(model.reconstruct(pixels), whole, atol=1e-6)
    assert sizes == [2, 2, 1]


def test_the_registered_model_carries_the_limit_and_the_server_can_set_it(workspace):
    import mlflow

    save_variant(workspace.models, "vae")
    write_eval(workspace.metrics, "vae", 0.05)
    report = run_register(
        tiny_params(registry={"max_images": 5}),
        models_root=workspace.models,
        metrics_root=workspace.metrics,
    )
    uri = "models:/vaelab-vae@champion"
    images = mlflow.pyfunc.load_model(uri)
    assert images.predict(np.zeros((5, 16, 16, 1), dtype=np.uint8)).shape == (5, 16, 16, 1)
    with pytest.raises(MlflowException, match=LIMIT_MESSAGE.format(n=6, what="images", limit=5)):
        images.predict(np.zeros((6, 16, 16, 1), dtype=np.uint8))
    decoder = mlflow.pyfunc.load_model(report["variants"]["vae"]["decoder_uri"])
    with pytest.raises(MlflowException, match=LIMIT_MESSAGE.format(n=6, what="latents", limit=5)):
        decoder.predict(np.zeros((6, 4), dtype=np.float32))

    # What SERVING_MODEL_CONFIG does for `mlflow models serve`: load with another model_config.
    wider = mlflow.pyfunc.load_model(uri, model_config={"max_images": 6})
    assert wider.predict(np.zeros((6, 16, 16, 1), dtype=np.uint8)).shape == (6, 16, 16, 1)
    with pytest.raises(MlflowException, match="max_images must be a whole number >= 1, got 0"):
        mlflow.pyfunc.load_model(uri, model_config={"max_images": 0})
