"""The CUDA path: the split in device memory, bf16 autocast, a few real steps. Skipped without
a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.config.model_config import VaeConvConfig, VaeGanConfig
from vaelab.config.train_config import TrainConfig
from vaelab.models import build_model
from vaelab.runtime import select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import train_model


@pytest.mark.gpu
@pytest.mark.parametrize(
    "config",
    [
        VaeConvConfig(arch="vae_conv", filters=[32, 64], z_dim=16),
        VaeGanConfig(arch="vae_gan", filters=[32, 64], z_dim=16),
    ],
)
def test_cuda_bf16_training_keeps_the_split_on_the_device(tmp_path, config):
    runtime = select_runtime("auto", "auto", key="train")
    assert runtime.device.type == "cuda"
    images = np.random.default_rng(0).integers(0, 256, (512, 64, 64, 3), dtype=np.uint8)
    train = Batches(images, batch_size=128, device=runtime.device, seed=0)
    val = Batches(images[:128], batch_size=128, device=runtime.device, seed=0, shuffle=False)
    assert train.on_device and train.store.device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(config, image_size=64, channels=3)
    result = train_model(
        model.to(runtime.device),
        train,
        val,
        TrainConfig(epochs=2, batch_size=128),
        runtime,
        checkpoint_path=tmp_path / "ckpt.pt",
        config_hash=config_hash({"gpu": 1}),
        progress=False,
    )
    assert runtime.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert result.steps == 8 and all(np.isfinite(row["train_loss"]) for row in result.history)
