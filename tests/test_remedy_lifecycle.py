"""Every remedy of params.yaml (its default variants and its commented entries alike) goes
through a variant's whole life like the others: it trains on grey 16×16 and 64×64 RGB images,
resumes after a kill to the same bytes, and the registry's pyfunc loads it from its folder to
reconstruct, encode and generate (what `register` logs and `mlflow models serve` runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.fit import SHAPES, assert_round_trip, assert_trained, fit
from tests.test_config import uncommented_params
from vaelab.compare.remedies import applied
from vaelab.config import params_from_dict
from vaelab.config.train_config import TrainConfig
from vaelab.models import build_model
from vaelab.runtime import select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import train_model


def _remedies() -> dict[str, dict]:
    raw, _names = uncommented_params()
    models = params_from_dict(raw).models
    return {
        name: entry.model_dump(mode="json", exclude={"epochs"})
        for name, entry in models.items()
        if applied(entry.model_dump(mode="json"))
    }


REMEDIES = _remedies()


def test_params_yaml_has_every_kind_of_remedy():
    kinds = {remedy.key for entry in REMEDIES.values() for remedy in applied(entry)}
    assert {"sigma_vae", "msssim", "ffl", "resnet", "vae_gan", "wae_mmd", "rae"} <= kinds


@pytest.mark.parametrize(("image_size", "channels"), SHAPES)
@pytest.mark.parametrize("name", sorted(REMEDIES))
def test_each_remedy_trains_saves_loads_and_serves(tmp_path, name, image_size, channels):
    from vaelab.registry.pyfunc import VaelabPyfunc

    fitted = fit(REMEDIES[name], image_size, channels, tmp_path)
    assert_trained(fitted)
    assert_round_trip(fitted)
    served = VaelabPyfunc.from_folder(tmp_path / "model")
    pixels = np.random.default_rng(1).integers(
        0, 256, (3, image_size, image_size, channels), dtype=np.uint8
    )
    with torch.no_grad():
        expected = fitted.loaded(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)[
            "recon"
        ]
    # The pyfunc's own batches and layout may round a conv differently in the last bit.
    np.testing.assert_allclose(
        served.predict(None, pixels), expected.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-6
    )
    assert served.predict(None, pixels, params={"mode": "encode"}).shape == (
        3,
        fitted.loaded.latent_dim,
    )
    assert served.generate(2, seed=0).shape == (2, image_size, image_size, channels)


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", sorted(REMEDIES))
def test_each_remedy_resumes_after_a_kill_to_the_same_bytes(tmp_path, name):
    raw = REMEDIES[name]
    images = np.random.default_rng(0).integers(0, 256, (24, 16, 16, 1), dtype=np.uint8)
    runtime = select_runtime("cpu", "fp32", key="train")
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, checkpoint_every=2, device="cpu")
    config = params_from_dict(
        {"data": {"image_size": 16, "channels": 1}, "models": {"v": raw}}
    ).models["v"]

    def train(folder, *, kill_at=None):
        torch.manual_seed(0)
        model = build_model(config, image_size=16, channels=1)
        batches = Batches(images[:20], batch_size=4, device=runtime.device, seed=0)
        real_epoch = batches.epoch

        def epoch(number, start=0):
            for i, batch in enumerate(real_epoch(number, start)):
                if (number, start + i) == kill_at:
                    raise Killed
                yield batch

        batches.epoch = epoch
        val = Batches(images[20:], batch_size=4, device=runtime.device, seed=0, shuffle=False)
        result = train_model(
            model,
            batches,
            val,
            cfg,
            runtime,
            checkpoint_path=folder / "ckpt.pt",
            config_hash=config_hash({"v": raw}),
            progress=False,
        )
        return model, result

    whole, whole_result = train(tmp_path / "whole")
    with pytest.raises(Killed):
        train(tmp_path / "killed", kill_at=(1, 3))  # epoch 2, after its step-8 checkpoint
    torch.manual_seed(99)  # the resumed run must not lean on the fresh process's RNG
    resumed, resumed_result = train(tmp_path / "killed")
    assert resumed_result.resumed_from == {"epoch": 1, "batch": 3, "step": 8}
    torch.testing.assert_close(resumed.state_dict(), whole.state_dict(), rtol=0, atol=0)
    timing = {"seconds", "images_per_second"}
    assert [
        {k: v for k, v in row.items() if k not in timing} for row in resumed_result.history
    ] == [{k: v for k, v in row.items() if k not in timing} for row in whole_result.history]
