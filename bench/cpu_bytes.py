"""Which bytes does this CPU compute? Hashes to compare between machines (bench/README.md,
"CPU bytes"): a rerun of this script on another CPU model says whether the pinned kernels
(``train.portable_kernels``, vaelab.kernels.PINS) give the same bytes, and if not, which
kernel differs.

Run as ``.venv/bin/python bench/cpu_bytes.py [--models]``.

For each setting (default: no pinning variable set; pinned: all of PINS; then each variable
of PINS alone), a fresh interpreter with that environment and 2 threads computes:

- ``fit``: 30 Adam steps of a tiny conv net (two 3x3 convolutions, ReLU, a linear layer) on
  seeded data, the md5 of its weights — the whole training path in one number;
- per kernel, the md5 of one op's output on fixed inputs: ``conv_fwd`` and ``conv_bwd``
  (oneDNN), ``linear_fwd`` and ``linear_bwd`` (MKL's sgemm), ``adam`` (ATen's foreach
  kernels), ``reduce`` (ATen's sum and mean), ``exp_log`` (ATen's vectorised transcendental
  functions), ``np_exp`` (numpy's own loops), ``np_matmul`` (OpenBLAS).

Where two machines' ``fit`` differ under one setting, the first op whose hash differs names
the kernel. ``--models`` adds the md5 of every ``models/*/seed*/model.pt`` of this checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vaelab.kernels import PINS  # noqa: E402  (the path above: runnable without an install)


def md5(*arrays: object) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for array in arrays:
        digest.update(array.detach().contiguous().numpy().tobytes())  # type: ignore[attr-defined]
    return digest.hexdigest()[:12]


def measure() -> dict[str, str]:
    """The hashes of one setting, computed in this process (the worker)."""
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(2)
    out: dict[str, str] = {"capability": torch.backends.cpu.get_cpu_capability()}
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 16),
    )
    x = torch.rand(64, 1, 32, 32)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(30):
        optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        optimizer.step()
    out["fit"] = md5(*net.parameters())

    generator = torch.Generator().manual_seed(1)
    images = torch.rand(32, 8, 32, 32, generator=generator, requires_grad=True)
    kernel = torch.rand(16, 8, 3, 3, generator=generator, requires_grad=True)
    conv = torch.nn.functional.conv2d(images, kernel, padding=1)
    out["conv_fwd"] = md5(conv)
    conv.square().sum().backward()
    out["conv_bwd"] = md5(images.grad, kernel.grad)
    inputs = torch.rand(256, 1024, generator=generator, requires_grad=True)
    weight = torch.rand(64, 1024, generator=generator, requires_grad=True)
    product = torch.nn.functional.linear(inputs, weight)
    out["linear_fwd"] = md5(product)
    product.square().sum().backward()
    out["linear_bwd"] = md5(inputs.grad, weight.grad)
    param = torch.nn.Parameter(torch.rand(100_003, generator=generator))
    param.grad = torch.rand(100_003, generator=generator)
    adam = torch.optim.Adam([param], 1e-3)
    for _ in range(3):
        adam.step()
    out["adam"] = md5(param)
    values = torch.rand(1_000_003, generator=generator)
    out["reduce"] = md5(values.sum().reshape(1), values.mean().reshape(1))
    out["exp_log"] = md5(values.exp(), values.log(), torch.tanh(values))
    rng = np.random.default_rng(2)
    matrix = rng.random((300, 300))
    out["np_exp"] = hashlib.md5(np.exp(matrix).tobytes(), usedforsecurity=False).hexdigest()[:12]
    out["np_matmul"] = hashlib.md5((matrix @ matrix).tobytes(), usedforsecurity=False).hexdigest()[
        :12
    ]
    return out


def settings() -> dict[str, dict[str, str]]:
    """The environments compared: default, pinned, and each pinning variable alone."""
    found = {"default": {}, "pinned": dict(PINS)}
    found |= {f"{name} alone": {name: value} for name, value in PINS.items()}
    return found


def worker_env(pins: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    return env | pins | {"OMP_NUM_THREADS": "2"}


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def model_hashes() -> dict[str, str]:
    return {
        str(path.relative_to(REPO)): hashlib.md5(
            path.read_bytes(), usedforsecurity=False
        ).hexdigest()
        for path in sorted(REPO.glob("models/*/seed*/model.pt"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", action="store_true", help="also hash models/*/seed*/model.pt")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure()))
        return
    rows = {}
    for name, pins in settings().items():
        result = subprocess.run(
            [sys.executable, __file__, "--worker"],
            env=worker_env(pins),
            capture_output=True,
            text=True,
            check=True,
        )
        rows[name] = json.loads(result.stdout)
    columns = list(rows["default"])
    print(f"CPU: {cpu_model()}")
    print("| setting | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(row[column] for column in columns) + " |")
    if args.models:
        hashes = model_hashes()
        together = hashlib.md5("".join(hashes.values()).encode(), usedforsecurity=False)
        print(f"\n{len(hashes)} models/*/seed*/model.pt, md5 of their md5s: {together.hexdigest()}")
        for path, digest in hashes.items():
            print(f"{digest}  {path}")


if __name__ == "__main__":
    main()
