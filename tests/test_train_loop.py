"""The training loop on a tiny model: resume equality (a VAE-GAN's two optimisers too), NaN guard,
history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.config.model_config import parse_model_config
from vaelab.config.train_config import TrainConfig
from vaelab.models import build_model
from vaelab.runtime import select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import NonFiniteLoss, train_model


class TinyVAE(torch.nn.Module):
    """Just enough of the Autoencoder interface for the loop: noise makes RNG state matter."""

    def __init__(self, pixels: int, z: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(pixels, 2 * z)
        self.dec = torch.nn.Linear(z, pixels)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return {
            "recon": torch.sigmoid(self.dec(z)).view_as(x) * self.scale,
            "mu": mu,
            "logvar": logvar,
        }

    def loss(self, x, out, *, epoch: int = 0) -> dict[str, torch.Tensor]:
        recon = ((out["recon"] - x) ** 2).flatten(1).sum(1).mean()
        kl = (-0.5 * (1 + out["logvar"] - out["mu"] ** 2 - out["logvar"].exp()).sum(1)).mean()
        return {"recon": recon, "kl": kl, "loss": recon + kl}


def tiny_vae(scale: float = 1.0) -> torch.nn.Module:
    return TinyVAE(16, scale=scale)


def tiny_vae_gan(scale: float = 1.0) -> torch.nn.Module:
    """A VAE-GAN at the loop tests' 4x4 grey: two optimisers, and prior samples to draw."""
    return build_model(
        parse_model_config(
            {"arch": "vae_gan", "filters": [2], "z_dim": 3, "discriminator": [2, 2]}
        ),
        image_size=4,
        channels=1,
    )


def _setup(tmp_path, *, epochs=3, checkpoint_every=2, scale=1.0, make_model=tiny_vae):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8)
    runtime = select_runtime("cpu", "auto", key="train")
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.01, checkpoint_every=checkpoint_every)
    train = Batches(images[:32], batch_size=8, device=runtime.device, seed=0)
    val = Batches(images[32:], batch_size=8, device=runtime.device, seed=0, shuffle=False)
    torch.manual_seed(0)
    model = make_model(scale=scale)
    return model, train, val, cfg, runtime


def _train(tmp_path, model, train, val, cfg, runtime):
    return train_model(
        model,
        train,
        val,
        cfg,
        runtime,
        checkpoint_path=tmp_path / "ckpt.pt",
        config_hash=config_hash({"x": 1}),
        progress=False,
    )


class Interrupt(Exception):
    pass


def _train_until_killed(
    tmp_path, model, train, val, cfg, runtime, *, epoch: int, batch: int
) -> None:
    """Train until ``epoch`` (from 0) is about to serve ``batch``, then die as a kill would."""
    real_epoch = train.epoch

    def dying_epoch(at_epoch, start_batch=0):
        for i, images in enumerate(real_epoch(at_epoch, start_batch)):
            if at_epoch == epoch and start_batch + i == batch:
                raise Interrupt
            yield images

    train.epoch = dying_epoch
    try:
        with pytest.raises(Interrupt):
            _train(tmp_path, model, train, val, cfg, runtime)
    finally:
        train.epoch = real_epoch


@pytest.mark.parametrize("make_model", [tiny_vae, tiny_vae_gan])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, make_model):
    model, train, val, cfg, runtime = _setup(tmp_path / "a", make_model=make_model)
    full = _train(tmp_path / "a", model, train, val, cfg, runtime)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, train, val, cfg, runtime = _setup(tmp_path / "b", make_model=make_model)
    # Mid-epoch 2, after the step-6 checkpoint.
    _train_until_killed(tmp_path / "b", model, train, val, cfg, runtime, epoch=1, batch=3)
    torch.manual_seed(123)  # the resumed run must not depend on the fresh process's RNG
    model2, _, _, _, _ = _setup(tmp_path / "b", make_model=make_model)
    resumed = _train(tmp_path / "b", model2, train, val, cfg, runtime)

    assert resumed.resumed_from == {"epoch": 1, "batch": 2, "step": 6}
    for name, tensor in model2.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    untimed = [
        {k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
        for row in full.history
    ]
    assert [
        {k: row[k] for k in untimed[0]} for row in resumed.history
    ] == untimed  # every term, every bit
    assert len(full.history) == 3 and full.steps == 12
    # Every optimiser's state (moments and step counts) too, as the last checkpoints hold them.
    finished, again = (
        torch.load(tmp_path / run / "ckpt.pt", weights_only=True)["optimizers"] for run in "ab"
    )
    assert (
        finished.keys()
        == again.keys()
        == ({"model", "discriminator"} if make_model is tiny_vae_gan else {"model"})
    )
    torch.testing.assert_close(again, finished, rtol=0, atol=0)


def test_epoch_ends_save_a_checkpoint_only_when_the_last_is_checkpoint_seconds_old(
    tmp_path, monkeypatch
):
    """Steps 2, 4, ... save (checkpoint_every 2 over 4 steps an epoch, so every epoch end is
    also a step checkpoint): with checkpoint_every above the run's steps, what saves is the
    clock. A fake clock that moves 10 s per epoch and checkpoint_seconds 25: epochs 3 and 6
    (30 s after the last save), and the last one, epoch 7, whatever the clock."""
    import vaelab.train.loop as loop

    model, train, val, cfg, runtime = _setup(tmp_path, epochs=7, checkpoint_every=1000)
    cfg = cfg.model_copy(update={"checkpoint_seconds": 25.0})
    clock = {"now": 0.0}
    saves = []
    real_epoch = train.epoch

    def ticking_epoch(epoch, start_batch=0):
        clock["now"] += 10.0
        yield from real_epoch(epoch, start_batch)

    def recording_save(path, state, expected_hash):
        saves.append(state.epoch)
        real_save(path, state, expected_hash)

    real_save = loop.save_checkpoint
    train.epoch = ticking_epoch
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(loop, "save_checkpoint", recording_save)
    _train(tmp_path, model, train, val, cfg, runtime)
    assert saves == [3, 6, 7]  # state.epoch counts finished epochs when an epoch end saves

    # checkpoint_seconds 0: every epoch end saves.
    saves.clear()
    model, train, val, cfg, runtime = _setup(tmp_path / "every", epochs=3, checkpoint_every=1000)
    _train(
        tmp_path / "every",
        model,
        train,
        val,
        cfg.model_copy(update={"checkpoint_seconds": 0.0}),
        runtime,
    )
    assert saves == [1, 2, 3]


def test_a_run_killed_between_sparse_checkpoints_resumes_to_identical_weights(tmp_path):
    """The default's sparse epoch-end checkpoints lose only time: with no epoch end saving
    (checkpoint_seconds an hour) and a step checkpoint every 3 of the 12 steps, a run killed
    at step 10 resumes from step 9, mid-epoch 3, to the uninterrupted run's bytes and rows."""
    model, train, val, cfg, runtime = _setup(tmp_path / "a", checkpoint_every=3)
    cfg = cfg.model_copy(update={"checkpoint_seconds": 3600.0})
    full = _train(tmp_path / "a", model, train, val, cfg, runtime)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, train, val, _, runtime = _setup(tmp_path / "b", checkpoint_every=3)
    _train_until_killed(
        tmp_path / "b", model, train, val, cfg, runtime, epoch=2, batch=2
    )  # after steps 9 and 10
    model2, _, _, _, _ = _setup(tmp_path / "b", checkpoint_every=3)
    resumed = _train(tmp_path / "b", model2, train, val, cfg, runtime)

    assert resumed.resumed_from == {"epoch": 2, "batch": 1, "step": 9}
    for name, tensor in model2.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0)
    untimed = [
        {k: v for k, v in row.items() if k not in ("seconds", "images_per_second")}
        for row in full.history
    ]
    assert [{k: row[k] for k in untimed[0]} for row in resumed.history] == untimed


def test_non_finite_loss_names_epoch_step_and_terms(tmp_path):
    model, train, val, cfg, runtime = _setup(tmp_path, scale=float("nan"))
    with pytest.raises(NonFiniteLoss) as info:
        _train(tmp_path, model, train, val, cfg, runtime)
    message = str(info.value)
    assert "epoch 1, step 1" in message and "recon=nan" in message and "train.lr" in message


def test_a_checkpoint_of_another_config_is_ignored(tmp_path):
    model, train, val, cfg, runtime = _setup(tmp_path, epochs=1)
    _train(tmp_path, model, train, val, cfg, runtime)
    model, train, val, cfg, runtime = _setup(tmp_path, epochs=1)
    result = train_model(
        model,
        train,
        val,
        cfg,
        runtime,
        checkpoint_path=tmp_path / "ckpt.pt",
        config_hash=config_hash({"x": 2}),
        progress=False,
    )
    assert result.resumed_from is None and result.steps == 4


def test_flips_depend_on_seed_and_epoch_only_and_leave_the_order_alone():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 5, 1), dtype=np.uint8)
    plain = Batches(images, batch_size=8, device=torch.device("cpu"), seed=1)
    flipped = Batches(images, batch_size=8, device=torch.device("cpu"), seed=1, hflip=True)
    assert torch.equal(plain.order(2), flipped.order(2))
    mask = flipped.flips(2)
    assert 10 <= int(mask.sum()) <= 30 and not torch.equal(mask, flipped.flips(3))
    served = torch.cat(list(flipped.epoch(2)))
    originals = torch.cat(list(plain.epoch(2)))
    torch.testing.assert_close(
        served[mask], originals[mask].flip(3), rtol=0, atol=0
    )  # (B, C, H, W): width
    torch.testing.assert_close(served[~mask], originals[~mask], rtol=0, atol=0)
    # A resumed epoch serves the same flips from its start batch on.
    torch.testing.assert_close(
        torch.cat(list(flipped.epoch(2, start_batch=2))), served[16:], rtol=0, atol=0
    )


def test_a_corrupt_checkpoint_is_one_message_naming_the_file(tmp_path):
    """Garbage where the checkpoint should be: a UserError naming the file and the fix (delete
    it: training restarts from scratch), not torch's PytorchStreamReader error."""
    from tests.support.fit import fit
    from vaelab.errors import UserError

    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    with pytest.raises(UserError) as caught:
        fit({"arch": "vae_conv", "filters": [4], "z_dim": 2}, 8, 1, tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "checkpoint.pt") in message and "delete it" in message
