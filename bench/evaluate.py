"""Benchmark: evaluate and chain at CelebA scale, this tree against a baseline commit, in one run.

Run as ``PYTHONPATH=src .venv/bin/python bench/evaluate.py [--sizes 1000,5000,20000]
[--baseline 560aef1] [--baseline-sizes 1000,5000] [--metric-batches 4] [--repeats 3]``.

Synthetic CelebA-like data: N test images of 64x64x3 (smooth colour fields with edges and
noise; 0/1 Smiling and Male columns, so latent arithmetic runs) and the project's VAE trunk
(16-32-64, z 16) with its deterministic twin as the chain's AE, untrained, saved as
``train@<variant>`` saves them. Three measurements:

(1) memory: for each N, a fresh process per (code, stage) runs ``run_evaluate`` (one
    replicate) or ``run_chain`` (5 passes) and reports its peak RSS (``VmHWM``), its RSS
    before the stage began and its seconds. The code is this tree's
    ``src/`` and, for the baseline sizes, the baseline commit's ``src/`` (``git archive``).
(2) ms per image of the per-image metrics of evaluate's forward pass (MSE, PSNR, SSIM of
    the reconstructions; the four blur metrics of the inputs and of the reconstructions),
    on batches of 256 images: this tree's ``vaelab.measures.image_measures`` against the baseline's
    (its source read from git), interleaved, best of ``--repeats``; the values are compared.
    Per replicate of a ``--seeds``-seed stage as the stage spends it: the baseline measures
    everything for every replicate; this tree measures the test images' own blur once per
    stage (``eval.forward.measure_inputs``) and the reconstructions' per replicate.
(3) figure seconds per variant: the time spent in ``vaelab.figures`` (drawing and
    saving) during the evaluate runs of (1).

Targets (issue 16): peak memory independent of N, <= 1.5 GB at 20,000 images on CPU;
metrics <= 1.5 ms per image on CPU; figures < 2 s per variant.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

SIZE, CHANNELS = 64, 3
REPO = Path(__file__).resolve().parent.parent
# The commit this work started from: "today's code" of issue 16.
BASELINE = "560aef1"
TRUNK = {"arch": "vae_conv", "filters": [16, 32, 64], "z_dim": 16, "recon_loss": "bce"}
MODELS = {
    "vae": {**TRUNK, "variational": True, "kl_weight": 0.5},
    "ae": {**TRUNK, "variational": False},
}
PARAMS = {
    "seed": 0,
    "data": {"dataset": "celeba", "image_size": SIZE, "channels": CHANNELS},
    "train": {"seeds": 1},
    "models": MODELS,
    "evaluate": {"device": "cpu", "chain": {"vae": "vae", "ae": "ae", "passes": 5}},
}
METRIC_BATCH = 256


def synthetic_images(count: int, seed: int = 0) -> np.ndarray:
    """(count, 64, 64, 3) uint8: a smooth random colour field, a bright disc with a hard edge,
    noise."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    out = np.empty((count, SIZE, SIZE, CHANNELS), dtype=np.uint8)
    for first in range(0, count, 1024):
        n = min(1024, count - first)
        field = torch.nn.functional.interpolate(
            torch.rand(n, CHANNELS, 6, 6, generator=generator),
            size=SIZE,
            mode="bicubic",
            align_corners=False,
        )
        centre = torch.rand(n, 2, 1, 1, generator=generator) * SIZE * 0.5 + SIZE * 0.25
        disc = ((y - centre[:, :1]) ** 2 + (x - centre[:, 1:]) ** 2 < (SIZE * 0.3) ** 2).float()
        images = (
            0.6 * field
            + 0.4 * disc
            + 0.03 * torch.randn(n, CHANNELS, SIZE, SIZE, generator=generator)
        )
        out[first : first + n] = (
            (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        )
    return out


def write_workspace(root: Path, test_images: int) -> None:
    """``root/prepared`` (test_images test images and 16 train/val ones) and ``root/models``."""
    import pandas as pd
    import torch

    from vaelab.config import params_from_dict
    from vaelab.models import build_model
    from vaelab.models.saved import SavedConfig, Trained, save_replicates

    prepared = root / "prepared"
    prepared.mkdir(parents=True)
    total = test_images + 16
    np.save(prepared / "images.npy", synthetic_images(total))
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "image_id": [f"{i:06d}.jpg" for i in range(total)],
            "split": ["train"] * 8 + ["val"] * 8 + ["test"] * test_images,
            "Smiling": rng.integers(0, 2, total),
            "Male": rng.integers(0, 2, total),
        }
    ).to_csv(prepared / "index.csv", index=False)
    params = params_from_dict(PARAMS)
    torch.manual_seed(0)
    for variant, config in params.models.items():
        model = build_model(config, image_size=SIZE, channels=CHANNELS)
        save_replicates(
            root / "models" / variant,
            [
                Trained(
                    model,
                    SavedConfig(
                        variant=variant,
                        model=config,
                        image_size=SIZE,
                        channels=CHANNELS,
                        seed=0,
                        train=params.train,
                        trainable_params=sum(p.numel() for p in model.parameters()),
                        data=params.data,
                    ),
                )
            ],
        )


def status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of this process, in MB, from /proc/self/status.

    The peak is VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and
    exec, so a child's would be at least its parent's size when it was started."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(stage: str, root: Path) -> None:
    """In a fresh process, with the code under test first on PYTHONPATH: run one stage, print
    JSON."""
    from vaelab import figures
    from vaelab.chain.chain import run_chain
    from vaelab.config import params_from_dict
    from vaelab.evaluate.evaluate import run_evaluate

    drawing = {"seconds": 0.0, "depth": 0}

    def timed(function):
        def wrapper(*args, **kwargs):
            drawing["depth"] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                drawing["depth"] -= 1
                if drawing["depth"] == 0:
                    drawing["seconds"] += time.perf_counter() - started

        return wrapper

    for name, value in list(vars(figures).items()):
        if callable(value) and getattr(value, "__module__", None) == figures.__name__:
            setattr(figures, name, timed(value))
    params = params_from_dict(PARAMS)
    roots = {
        "prepared": root / "prepared",
        "models_root": root / "models",
        "metrics_root": root / f"out-{os.getpid()}" / "metrics",
        "reports_root": root / f"out-{os.getpid()}" / "reports",
    }
    before = status_mb("VmRSS")
    started = time.perf_counter()
    if stage == "evaluate":
        run_evaluate(params, "vae", progress=False, **roots)
    else:
        run_chain(params, **roots)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "peak_mb": status_mb("VmHWM"),
                "before_mb": before,
                "seconds": seconds,
                "figure_seconds": drawing["seconds"],
            }
        )
    )


def run_worker(src: Path, stage: str, root: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", stage, str(root)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{stage} worker ({src}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(rev: str, folder: Path) -> Path:
    """``rev``'s src/ unpacked under folder (git archive)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def baseline_metrics(rev: str) -> ModuleType:
    """``rev``'s vaelab.measures.image_measures, read from git (it imports only numpy, scipy,
    skimage, torch)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:src/vaelab/measures/image_measures.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_loader(f"metrics_{rev}", loader=None)
    )
    exec(compile(source, f"{rev}:src/vaelab/measures/image_measures.py", "exec"), module.__dict__)
    return module


def metric_rates(
    rev: str, batches: int, repeats: int, seeds: int
) -> tuple[float, float, float, bool]:
    """ms per image and replicate of the forward pass's metrics: the baseline; this tree
    measuring everything per replicate; this tree as a ``seeds``-replicate stage spends it
    (the inputs' blur once, the rest per replicate); and whether the values agree."""
    import torch

    from vaelab.measures import image_measures as ours

    theirs = baseline_metrics(rev)
    images = (
        torch.from_numpy(synthetic_images(batches * METRIC_BATCH, seed=1))
        .permute(0, 3, 1, 2)
        .float()
        / 255
    )
    generator = torch.Generator().manual_seed(2)
    recons = (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    pairs = [
        (images[i : i + METRIC_BATCH], recons[i : i + METRIC_BATCH])
        for i in range(0, len(images), METRIC_BATCH)
    ]

    def measure(
        module: ModuleType, inputs_once: bool = False
    ) -> tuple[float, list[dict[str, np.ndarray]]]:
        # One stage of `seeds` replicates over the same images (one measured: 1 when not
        # inputs_once).
        started, values = time.perf_counter(), []
        replicates = seeds if inputs_once else 1
        inputs = (
            [{f"input.{k}": v for k, v in module.blur_metrics(x).items()} for x, _r in pairs]
            if inputs_once
            else None
        )
        for _replicate in range(replicates):
            values = []
            for index, (x, r) in enumerate(pairs):
                measured = (
                    inputs[index]
                    if inputs
                    else {f"input.{k}": v for k, v in module.blur_metrics(x).items()}
                )
                values.append(
                    {
                        **module.reconstruction_metrics(x, r),
                        **measured,
                        **{f"recon.{k}": v for k, v in module.blur_metrics(r).items()},
                    }
                )
        return (time.perf_counter() - started) / (len(images) * replicates) * 1e3, values

    best = {"baseline": float("inf"), "ours": float("inf"), "ours, inputs once": float("inf")}
    results = {}
    for _ in range(repeats):
        for label, module, once in (
            ("baseline", theirs, False),
            ("ours", ours, False),
            ("ours, inputs once", ours, True),
        ):
            ms, results[label] = measure(module, once)
            best[label] = min(best[label], ms)
    equal = all(
        np.array_equal(a[k], b[k])
        for other in ("ours", "ours, inputs once")
        for a, b in zip(results["baseline"], results[other], strict=True)
        for k in a
    )
    return best["baseline"], best["ours"], best["ours, inputs once"], equal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,20000", help="test-split sizes for this tree")
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    parser.add_argument(
        "--baseline-sizes",
        default="1000,5000",
        help="test-split sizes for the baseline ('' = none)",
    )
    parser.add_argument(
        "--metric-batches", type=int, default=4, help="batches of 256 images for (2)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--seeds", type=int, default=3, help="replicates per stage for (2) (train.seeds)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("STAGE", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return

    import torch

    sizes = [int(s) for s in args.sizes.split(",") if s]
    baseline_sizes = [int(s) for s in args.baseline_sizes.split(",") if s]
    print(
        f"{platform.node()}: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}; {SIZE}x{SIZE}x{CHANNELS}; baseline {args.baseline}"
    )
    old_ms, all_ms, new_ms, equal = metric_rates(
        args.baseline, args.metric_batches, args.repeats, args.seeds
    )
    print(
        f"(2) per-image metrics, {args.metric_batches * METRIC_BATCH} images in batches of "
        f"{METRIC_BATCH}, best of {args.repeats}, ms per image and replicate: baseline "
        f"{old_ms:.2f}; this tree {all_ms:.2f} measuring everything per replicate "
        f"({old_ms / all_ms:.1f}x), {new_ms:.2f} in a {args.seeds}-seed stage that measures "
        f"the inputs once ({old_ms / new_ms:.1f}x); "
        f"values {'identical' if equal else 'DIFFERENT'}"
    )
    print(f"    target <= 1.5 ms/image: {'MET' if new_ms <= 1.5 else 'NOT MET'}")

    codes = {"this tree": REPO / "src"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if baseline_sizes:
            codes[args.baseline] = baseline_tree(args.baseline, Path(tmp))
        for count in sorted(set(sizes) | set(baseline_sizes)):
            root = Path(tmp) / f"n{count}"
            write_workspace(root, count)
            for code, src in codes.items():
                if count not in (sizes if code == "this tree" else baseline_sizes):
                    continue
                for stage in ("evaluate", "chain"):
                    result = run_worker(src, stage, root)
                    rows.append((code, stage, count, result))
                    print(
                        f"(1) {code:>9} {stage:8} {count:6d} images: "
                        f"peak RSS {result['peak_mb']:7.0f} MB "
                        f"(before the stage {result['before_mb']:4.0f} MB), "
                        f"{result['seconds']:7.1f} s "
                        f"({result['seconds'] / count * 1e3:5.2f} ms/image)"
                        + (
                            f", figures {result['figure_seconds']:.2f} s"
                            if stage == "evaluate"
                            else ""
                        ),
                        flush=True,
                    )
    ours = [(stage, count, r) for code, stage, count, r in rows if code == "this tree"]
    if not ours:  # --sizes '': the metrics alone
        return
    largest = max(sizes)
    for stage in ("evaluate", "chain"):
        peaks = {count: r["peak_mb"] for s, count, r in ours if s == stage}
        print(
            f"    {stage}: peak RSS {' / '.join(f'{peaks[c]:.0f}' for c in sorted(peaks))} MB at "
            f"{' / '.join(f'{c:,}' for c in sorted(peaks))} images; "
            f"target <= 1.5 GB at {largest:,}: "
            f"{'MET' if peaks[largest] <= 1536 else 'NOT MET'}"
        )
    figure_seconds = [r["figure_seconds"] for s, _count, r in ours if s == "evaluate"]
    print(
        f"(3) figures per variant (this tree): {max(figure_seconds):.2f} s at most; target < 2 s: "
        f"{'MET' if max(figure_seconds) < 2 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
