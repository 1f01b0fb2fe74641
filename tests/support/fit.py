"""Train a tiny ``models:`` entry a few steps with the real loop, save it and load it back.

For the tests of a model knob: the knob's model has to train (the loss backpropagates into
every parameter and stays finite), and its trained weights have to survive ``model.pt``
(``save_trained``, then ``load_trained``, weights only, strict) with identical outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import params_from_dict
from vaelab.models import Autoencoder, build_model, count_params
from vaelab.models.saved import SavedConfig, load_trained, save_trained
from vaelab.runtime import select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import TrainResult, train_model

# (image_size, channels): the smallest grey size the tests use and a CelebA-like colour one.
SHAPES = [(16, 1), (64, 3)]


@dataclass
class Fitted:
    model: Autoencoder  # as trained (train mode)
    loaded: Autoencoder  # read back from model.pt and config.json (eval mode)
    initial: dict[str, torch.Tensor]  # the state dict before the first step
    result: TrainResult
    images: torch.Tensor  # a (4, C, n, n) batch in [0, 1] to compare outputs on


def fit(
    raw: dict[str, Any], image_size: int, channels: int, folder: Path, *, steps: int = 2
) -> Fitted:
    """Build ``raw`` (seed 0), train it ``steps`` steps of 4 images, save it to ``folder``,
    load it."""
    params = params_from_dict(
        {
            "data": {"image_size": image_size, "channels": channels},
            "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "device": "cpu"},
            "models": {"v": raw},
        }
    )
    torch.manual_seed(0)
    model = build_model(params.models["v"], image_size=image_size, channels=channels)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    images = np.random.default_rng(0).integers(
        0, 256, (4 * steps + 4, image_size, image_size, channels), dtype=np.uint8
    )
    runtime = select_runtime("cpu", "fp32", key="train")
    train = Batches(images[: 4 * steps], batch_size=4, device=runtime.device, seed=0)
    val = Batches(images[4 * steps :], batch_size=4, device=runtime.device, seed=0, shuffle=False)
    result = train_model(
        model,
        train,
        val,
        params.train,
        runtime,
        checkpoint_path=folder / "checkpoint.pt",
        config_hash=config_hash({"v": raw}),
        progress=False,
    )
    config = SavedConfig(
        variant="v",
        model=params.models["v"],
        image_size=image_size,
        channels=channels,
        seed=0,
        train=params.train,
        trainable_params=count_params(model).trainable,
        data=params.data,
    )
    save_trained(folder / "model", model, config)
    loaded, _config = load_trained(folder / "model")
    batch = torch.from_numpy(images[4 * steps :]).permute(0, 3, 1, 2).float() / 255
    return Fitted(model, loaded, initial, result, batch)


def assert_round_trip(fitted: Fitted) -> None:
    """The loaded model has the trained weights, bit for bit, and gives the same outputs."""
    trained, loaded = fitted.model.eval(), fitted.loaded
    assert list(loaded.state_dict()) == list(trained.state_dict())
    torch.testing.assert_close(loaded.state_dict(), trained.state_dict(), rtol=0, atol=0)
    with torch.no_grad():
        ours, theirs = trained(fitted.images), loaded(fitted.images)
        assert set(ours) == set(theirs)
        for name in ours:
            assert torch.equal(ours[name], theirs[name]), name
        assert {k: v.item() for k, v in trained.loss(fitted.images, ours).items()} == {
            k: v.item() for k, v in loaded.loss(fitted.images, theirs).items()
        }


def assert_trained(fitted: Fitted, steps: int = 2) -> None:
    """Every parameter moved and every epoch's loss terms are finite."""
    assert fitted.result.steps == steps
    row = fitted.result.history[-1]
    assert all(np.isfinite(value) for value in row.values()), row
    after = dict(fitted.model.named_parameters())
    unmoved = [
        name for name, value in after.items() if torch.equal(value.detach(), fitted.initial[name])
    ]
    assert not unmoved, f"training did not move {unmoved}"
