"""Benchmark: vaelab's training path against the floor and the conventional JPEG pipeline.

Run as ``.venv/bin/python bench/train.py [--images N] [--batch-size 128] [--device auto]``.

Study 003's VAE (filters 32, 64, 128, 256, z 256, BCE, kl_weight 5) at 64x64x3 is trained
for one epoch over the same N images, three ways, in one run:

(a) floor: the model stepping over one tensor already in memory (no data work at all);
(b) vaelab: ``train_model`` over ``Batches`` built from the prepared uint8 array (the
    ``train@<variant>`` stage's path: on a GPU the split lives in device memory);
(c) conventional (as in PyTorch-VAE): a Dataset that opens each 178x218 JPEG, centre-crops
    148 and resizes to 64 with PIL every epoch, behind a DataLoader with as many workers
    as cores and pinned memory (when there is a GPU to pin for).

Prints the three rates and the ratios. Targets: (b) within 10% of (a); (b) >= 1.2x (c) on
CPU; on one H100, an epoch of 162,770 images under 3 s and (b) >= 5x (c).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vaelab.config.data_config import CropConfig
from vaelab.config.model_config import VaeConvConfig
from vaelab.config.train_config import TrainConfig
from vaelab.data.imaging import ImageSpec
from vaelab.data.pool import process_all
from vaelab.models import build_model
from vaelab.runtime import select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import train_model

HEIGHT, WIDTH, CROP, SIZE = 218, 178, 148, 64
CELEBA_TRAIN = 162_770
MODEL = VaeConvConfig(
    arch="vae_conv", filters=[32, 64, 128, 256], z_dim=256, recon_loss="bce", kl_weight=5.0
)


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """CelebA-like 178x218 JPEGs: smooth structure plus noise, quality 90."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    paths = []
    for i in range(count):
        cy, cx = HEIGHT * 0.55 + rng.normal(0, 5), WIDTH / 2 + rng.normal(0, 5)
        face = np.exp(-(((y - cy) / 55) ** 2 + ((x - cx) / 42) ** 2))[..., None]
        pixels = face * rng.uniform(120, 230, 3) + (1 - face) * rng.uniform(0, 255, 3)
        pixels += rng.normal(0, 6, pixels.shape)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


class JpegFolder(Dataset):
    """The conventional per-image pipeline: decode, centre crop, resize, to tensor, every epoch."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB")
            left, top = (img.width - CROP) // 2, (img.height - CROP) // 2
            img = img.crop((left, top, left + CROP, top + CROP)).resize(
                (SIZE, SIZE), Image.Resampling.BILINEAR
            )
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255.0)


def make_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODEL, image_size=SIZE, channels=3).to(device)


def step_all(model, optimizer, batches, runtime) -> int:
    """One optimizer step per batch; returns the images seen. Same step as the loop's."""
    autocast = (
        torch.autocast(runtime.device.type, dtype=runtime.autocast_dtype)
        if runtime.autocast_dtype is not None
        else torch.autocast("cpu", enabled=False)
    )
    seen = 0
    for images in batches:
        images = images.to(runtime.device, non_blocking=True)
        with autocast:
            outputs = model(images)
            loss = model.loss(images, outputs)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(images)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return seen


def rate_floor(images: np.ndarray, batch_size: int, runtime) -> float:
    model = make_model(runtime.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    one = (
        torch.from_numpy(images[:batch_size])
        .to(runtime.device)
        .permute(0, 3, 1, 2)
        .float()
        .div_(255)
    )
    steps = len(images) // batch_size
    step_all(model, optimizer, [one] * 2, runtime)  # warm-up
    started = time.perf_counter()
    seen = step_all(model, optimizer, [one] * steps, runtime)
    return seen / (time.perf_counter() - started)


def rate_vaelab(images: np.ndarray, batch_size: int, runtime, workdir: Path) -> float:
    model = make_model(runtime.device)
    cfg = TrainConfig(
        epochs=2,
        batch_size=batch_size,
        lr=1e-3,
        checkpoint_every=10**9,
        checkpoint_dir=str(workdir),
    )
    usable = len(images) // batch_size * batch_size
    train = Batches(images[:usable], batch_size=batch_size, device=runtime.device, seed=0)
    # One batch of validation, as the stage does every epoch.
    val = Batches(
        images[:batch_size], batch_size=batch_size, device=runtime.device, seed=0, shuffle=False
    )
    result = train_model(
        model,
        train,
        val,
        cfg,
        runtime,
        checkpoint_path=workdir / "bench.pt",
        config_hash=config_hash({"bench": time.time()}),
        progress=False,
    )
    # Epoch 1 warms up (allocator, kernels); epoch 2 is the measurement.
    return result.history[-1]["images_per_second"]


def rate_conventional(paths: list[str], batch_size: int, runtime, workers: int) -> float:
    model = make_model(runtime.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        JpegFolder(paths),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=True,
        generator=torch.Generator().manual_seed(0),
    )
    step_all(model, optimizer, loader, runtime)  # warm-up epoch: workers start, caches fill
    started = time.perf_counter()
    seen = step_all(model, optimizer, loader, runtime)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument(
        "--jpegs",
        type=int,
        default=None,
        help="JPEG files written for (c) and prepared for (a) and (b), tiled to --images "
        "(default: --images; fewer keeps a CelebA-sized run within a GPU check's minutes)",
    )
    args = parser.parse_args()

    runtime = select_runtime(args.device, args.precision, key="train")
    workers = os.cpu_count() or 1
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_jpegs(folder, args.jpegs or args.images)
        spec = ImageSpec(size=SIZE, channels=3, crop=CropConfig(method="center", size=CROP))
        prepared = process_all([(p, None) for p in paths], spec, progress=False).pixels
        images = np.resize(prepared, (args.images, *prepared.shape[1:]))  # tiled to --images

        print(
            f"device: {runtime.device} ({runtime.precision}), cores: {workers}, torch threads: "
            f"{torch.get_num_threads()}, {args.images} images {SIZE}x{SIZE}x3, "
            f"batch {args.batch_size}"
        )
        floor = rate_floor(images, args.batch_size, runtime)
        ours = rate_vaelab(images, args.batch_size, runtime, folder)
        conventional = rate_conventional(paths, args.batch_size, runtime, workers)

    print(f"(a) floor, one tensor in memory:     {floor:8.1f} images/s")
    print(
        f"(b) vaelab train path:               {ours:8.1f} images/s  "
        f"({ours / floor:.1%} of the floor)"
    )
    print(f"(c) JPEG Dataset + DataLoader({workers}):   {conventional:8.1f} images/s")
    print(f"(b)/(c) = {ours / conventional:.2f}x")
    print(f"a CelebA-sized epoch ({CELEBA_TRAIN:,} images) at (b): {CELEBA_TRAIN / ours:.1f} s")
    within = ours >= 0.9 * floor
    print(f"target (b) within 10% of (a): {'MET' if within else 'NOT MET'}")
    target = 5.0 if runtime.device.type == "cuda" else 1.2
    print(f"target (b) >= {target}x (c): {'MET' if ours >= target * conventional else 'NOT MET'}")


if __name__ == "__main__":
    main()
