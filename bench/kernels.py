"""Benchmark: what pinning the CPU kernels (``train.portable_kernels``) costs, pinned against
each library's own choice, in one run.

Run as ``.venv/bin/python bench/kernels.py [--variant vae] [--repeats 3]`` after ``make repro``
(it reads ``data/prepared`` and params.yaml's entry for the variant).

In a temporary project holding a copy of ``data/prepared`` and a params.yaml with one variant
and one seed, the real stage scripts run as DVC runs them, ``python stages/train.py <variant>``
then ``python stages/evaluate.py <variant>``, once per setting and repeat, the two settings
interleaved:

- pinned: ``train.portable_kernels: true`` (vaelab.kernels.PINS set by the stage itself);
- default: ``train.portable_kernels: false`` and none of the PINS variables in the
  environment, so torch, oneDNN, MKL, OpenBLAS and numpy pick their kernels for this CPU.

Each training starts from scratch (its model folder and checkpoints removed). Prints per
setting the best wall seconds of each stage and the training's images/s
(``metrics/timing/train/<variant>.json``), and the ratios pinned / default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from vaelab.kernels import PINS

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("pinned", "default")


def project(folder: Path, variant: str) -> Path:
    """A project in ``folder`` with params.yaml's ``variant`` alone, one seed, and the
    repository's prepared data."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["models"] = {variant: params["models"][variant]}
    params["train"]["seeds"] = 1
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(REPO / "data" / "prepared", folder / "data" / "prepared")
    return folder


def run_stage(folder: Path, setting: str, script: str, variant: str) -> float:
    """Wall seconds of ``python stages/<script> <variant>`` in ``folder`` under ``setting``."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["train"]["portable_kernels"] = setting == "pinned"
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    env["PYTHONPATH"] = str(REPO / "src")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "stages" / script), variant],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def one_round(folder: Path, setting: str, variant: str) -> dict[str, float]:
    """Train from scratch, then evaluate; the seconds of each and the training's images/s."""
    for stale in ("models", "checkpoints"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    train = run_stage(folder, setting, "train.py", variant)
    timing = json.loads((folder / "metrics" / "timing" / "train" / f"{variant}.json").read_text())
    if setting == "pinned" and timing.get("kernels") != PINS:
        raise RuntimeError(f"the pinned training recorded kernels {timing.get('kernels')}")
    evaluate = run_stage(folder, setting, "evaluate.py", variant)
    return {
        "train_s": train,
        "evaluate_s": evaluate,
        "images_per_s": float(timing["images_per_second"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="vae")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = project(Path(tmp), args.variant)
        for repeat in range(args.repeats):
            for setting in SETTINGS if repeat % 2 == 0 else reversed(SETTINGS):
                results[setting].append(one_round(folder, setting, args.variant))
                print(f"repeat {repeat + 1} {setting}: {results[setting][-1]}", flush=True)
    best = {
        setting: {
            "train_s": min(row["train_s"] for row in rows),
            "evaluate_s": min(row["evaluate_s"] for row in rows),
            "images_per_s": max(row["images_per_s"] for row in rows),
        }
        for setting, rows in results.items()
    }
    print(f"\n{platform.processor() or platform.machine()}, {args.variant}, best of {args.repeats}")
    for setting, row in best.items():
        print(
            f"{setting:8s} train {row['train_s']:6.1f} s ({row['images_per_s']:.0f} images/s)"
            f"  evaluate {row['evaluate_s']:6.1f} s"
        )
    pinned, default = best["pinned"], best["default"]
    print(
        f"pinned / default: train {pinned['train_s'] / default['train_s']:.2f}x time, "
        f"{pinned['images_per_s'] / default['images_per_s']:.2f}x images/s; "
        f"evaluate {pinned['evaluate_s'] / default['evaluate_s']:.2f}x time"
    )


if __name__ == "__main__":
    main()
