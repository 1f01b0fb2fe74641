"""The GPU check's own measurements (run by bench/gpu.sh; on the CPU with small sizes for
its dry run): what bench/train.py does not measure.

Run as ``python bench/gpu.py --images N --test-images M --device cuda --out DIR``.

On synthetic uint8 faces made where it runs (``--images`` of 64x64x3, CelebA's training
split by default; nothing is carried), with bench/train.py's model (study 003's VAE):

- vaelab's training path (``train_model`` over on-device ``Batches``) per precision, fp32 and
  bf16 where the device has it, and with ``torch.compile``: images/s of the second epoch and
  the peak GPU memory of each;
- a ``torch.profiler`` summary of one such epoch (``profile.txt`` in ``--out``);
- one evaluation forward pass (``run_forward_pass``: reconstruction, blur, spectra, ELBO)
  over ``--test-images`` (CelebA's test split by default), images/s;
- a figure of the rates, ``rates.png`` in ``--out``; every number also in ``gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import CELEBA_TRAIN, SIZE, make_model
from vaelab import figures
from vaelab.config.train_config import TrainConfig
from vaelab.evaluate.forward_pass import run_forward_pass
from vaelab.runtime import Runtime, select_runtime
from vaelab.train.batches import Batches
from vaelab.train.checkpoint import config_hash
from vaelab.train.loop import train_model

CELEBA_TEST = 19_962


def faces(count: int, seed: int) -> np.ndarray:
    """``count`` smooth random 64x64x3 uint8 images (blurred noise: not constant, not white)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, SIZE // 8, SIZE // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)


def peak_reset(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(runtime: Runtime) -> float | None:
    if runtime.device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def train_rate(
    images: np.ndarray, runtime: Runtime, workdir: Path, *, compile: bool, batch_size: int
) -> dict[str, float | None]:
    """Two epochs of vaelab's path; images/s of the second and the peak GPU memory."""
    model = make_model(runtime.device)
    stepped = torch.compile(model) if compile else model
    usable = len(images) // batch_size * batch_size
    train = Batches(images[:usable], batch_size=batch_size, device=runtime.device, seed=0)
    val = Batches(
        images[:batch_size], batch_size=batch_size, device=runtime.device, seed=0, shuffle=False
    )
    peak_reset(runtime)
    result = train_model(
        stepped,
        train,
        val,
        TrainConfig(epochs=2, batch_size=batch_size, checkpoint_every=10**9),
        runtime,
        checkpoint_path=workdir / f"bench-{runtime.precision}-{compile}.pt",
        config_hash=config_hash({"bench": time.time()}),
        progress=False,
    )
    return {"images_per_s": result.history[-1]["images_per_second"], "peak_gib": peak_gib(runtime)}


def profile_epoch(images: np.ndarray, runtime: Runtime, out: Path, batch_size: int) -> None:
    """One epoch of steps under torch.profiler; the top operators to ``profile.txt``."""
    from torch.profiler import ProfilerActivity, profile

    model = make_model(runtime.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches(images, batch_size=batch_size, device=runtime.device, seed=0)
    activities = [ProfilerActivity.CPU]
    if runtime.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for x in batches.epoch(0):
            with torch.autocast(
                runtime.device.type,
                dtype=runtime.autocast_dtype or torch.float32,
                enabled=runtime.autocast_dtype is not None,
            ):
                loss = model.loss(x, model(x))["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if runtime.device.type == "cuda" else "cpu_time_total"
    (out / "profile.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=30))


def evaluate_rate(test: np.ndarray, runtime: Runtime, batch_size: int) -> float:
    """Images/s of one evaluation forward pass of an (untrained) model over ``test``."""
    model = make_model(runtime.device).eval()
    run_forward_pass(
        model, test[:batch_size], batch_size=batch_size, keep=8, seed=0, progress=False
    )
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run_forward_pass(model, test, batch_size=batch_size, keep=8, seed=0, progress=False)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return len(test) / (time.perf_counter() - started)


def draw(rates: dict[str, float], out: Path) -> None:
    figure = Figure(figsize=(7, 3))
    axes = figure.add_subplot()
    axes.barh(list(rates), list(rates.values()))
    axes.set_xlabel("images / s")
    axes.set_title("vaelab on this device: training (2nd epoch) and evaluation rates")
    figures.save(figure, out / "rates.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=CELEBA_TRAIN)
    parser.add_argument("--test-images", type=int, default=CELEBA_TEST)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    images, test = faces(args.images, seed=0), faces(args.test_images, seed=1)
    fp32 = select_runtime(args.device, "fp32", key="bench")
    runtimes = [fp32]
    if fp32.device.type == "cuda" and torch.cuda.is_bf16_supported():
        runtimes.append(select_runtime(args.device, "bf16", key="bench"))
    found: dict[str, object] = {"device": str(fp32.device), "torch": torch.__version__}
    if fp32.device.type == "cuda":
        found["name"] = torch.cuda.get_device_name()
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in runtimes:
            for compiled in (False, True):
                name = f"train {runtime.precision}{' compiled' if compiled else ''}"
                try:
                    row = train_rate(
                        images, runtime, Path(tmp), compile=compiled, batch_size=args.batch_size
                    )
                except Exception as error:  # a compile that does not fit is a result
                    found[name] = f"failed: {type(error).__name__}: {error}"
                    print(f"{name}: {found[name]}", flush=True)
                    continue
                found[name] = row
                rates[name] = float(row["images_per_s"] or 0.0)
                print(f"{name}: {row}", flush=True)
        profile_epoch(images, runtimes[-1], args.out, args.batch_size)
    rates["evaluate pass"] = evaluate_rate(test, fp32, batch_size=256)
    found["evaluate images/s"] = rates["evaluate pass"]
    print(f"evaluate pass over {len(test)} images: {rates['evaluate pass']:.0f} images/s")
    draw(rates, args.out)
    (args.out / "gpu.json").write_text(json.dumps(found, indent=2, default=str))


if __name__ == "__main__":
    main()
