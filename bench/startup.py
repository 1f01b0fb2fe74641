"""Benchmark: what stage start-up costs in a default ``make repro``, this tree against a baseline.

Run as ``.venv/bin/python bench/startup.py [--baseline 560aef1] [--repeats 3]
[--repro-seconds S]``.

For every stage script of ``stages/`` and each of the two trees (this tree's ``src/`` and
the baseline commit's, ``git archive``d), a fresh interpreter imports what the stage imports
before it works, and the seconds are measured as the stage spends them:

- ``--help``: the whole process, as ``python stages/<stage>.py --help`` (what a user waits for
  to read the usage; the baseline imports the stage's module before parsing arguments);
- imports: ``-X importtime``'s cumulative microseconds of the top-level imports of a process
  that runs the stage script up to its work: this tree imports ``vaelab.stage`` and the stage's
  module (``"module:function"``, after the arguments and params.yaml are checked); the baseline
  the script's own top-level imports. Best of ``--repeats``, the two trees interleaved.

- no-op: the wall seconds of a ``train`` stage process with nothing to do, as ``dvc repro -f
  train@<variant>`` runs it: its training finished and its inputs unchanged, its outputs
  deleted (DVC deletes them before it runs a stage). Each tree gets a throwaway project (a tiny
  LFW-like data set through the tree's own download and prepare stages, one variant, one
  seed, two epochs) and trains it once; then the two trees' no-op runs are interleaved. A
  tree that cannot build the project (params it does not know) shows ``n/a``.

The default pipeline runs each per-variant stage once per ``models:`` entry of params.yaml
(train, evaluate) and the others once; their sum is the start-up of a default ``make repro``,
and ``--repro-seconds`` (a measured ``make repro``; see the README) gives its share; the
no-op ``train`` times that count give what ``dvc repro -f`` of every training costs.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import yaml

NOOP_PARAMS = {
    "seed": 0,
    "data": {
        "dataset": "lfw",
        "image_size": 16,
        "channels": 1,
        "workers": 1,
        "split": {"method": "random", "val": 0.1, "test": 0.1},
        "crop": {"method": "center", "size": None},
        "download": {"retries": 1, "backoff": 0.0, "timeout": 5.0},
    },
    "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "seeds": 1},
    "models": {"vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4}},
}
TRAIN_OUTPUTS = (
    "models",
    "metrics/train",
    "metrics/detail/train",
    "metrics/timing/train",
    "metrics/history",
)
REPO = Path(__file__).resolve().parents[1]
BASELINE = "560aef1"  # the commit issue 16's work started from
PER_VARIANT = {"train", "evaluate"}
TARGET = re.compile(r'stage_main\(\s*__doc__\s*,\s*"([\w.]+):\w+"')


def stage_imports(script: Path) -> list[str]:
    """The import statements a stage script runs before its work, as source lines."""
    source = script.read_text()
    lazy = TARGET.search(source)
    lines = [
        ast.unparse(node)
        for node in ast.parse(source).body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    if lazy:  # this tree: the stage's module is imported by stage_main once params are valid
        lines.append(f"import {lazy.group(1)}")
    return lines


def import_seconds(src: Path, lines: list[str]) -> float:
    """Cumulative seconds of the top-level imports of ``lines`` in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "\n".join(lines)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(src)},
        cwd=src.parent,
    )
    total = 0
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # top level: one space after the bar
            total += int(cumulative)
    return total / 1e6


def help_seconds(tree: Path, script: str) -> float:
    """Wall seconds of ``python stages/<script> --help``."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, f"stages/{script}", "--help"],
        capture_output=True,
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree / "src")},
    )
    return time.perf_counter() - started


def _stage_run(tree: Path, project: Path, *args: str) -> float:
    """Run ``stages/<args>`` of ``tree`` in ``project``; its wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(tree / "stages" / args[0]), *args[1:]],
        capture_output=True,
        check=True,
        cwd=project,
        env={
            **os.environ,
            "PYTHONPATH": str(tree / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
        },
        timeout=600,
    )
    return time.perf_counter() - started


def noop_project(tree: Path, project: Path) -> Path | None:
    """A throwaway project trained once by ``tree``'s stages; None when they fail on it."""
    project.mkdir(parents=True)
    params = {
        **NOOP_PARAMS,
        "data": {
            **NOOP_PARAMS["data"],
            "download": {**NOOP_PARAMS["data"]["download"], "cache_dir": str(project / "dl")},
        },
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    try:
        for stage in (["download.py"], ["prepare.py"], ["train.py", "vae"]):
            _stage_run(tree, project, *stage)
    except subprocess.CalledProcessError as err:
        print(f"{tree}: no no-op project ({' '.join(map(str, err.cmd[1:]))} failed)")
        return None
    return project


def noop_seconds(tree: Path, project: Path) -> float:
    """Wall seconds of the train stage with its training finished and its outputs deleted."""
    for output in TRAIN_OUTPUTS:
        shutil.rmtree(project / output, ignore_errors=True)
    return _stage_run(tree, project, "train.py", "vae")


def baseline_tree(rev: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "src", "stages"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--repro-seconds", type=float, default=None, help="a measured make repro, for the share"
    )
    args = parser.parse_args()

    variants = len(yaml.safe_load((REPO / "params.yaml").read_text())["models"])
    scripts = sorted(path.name for path in (REPO / "stages").glob("*.py"))
    runs = {
        script: variants if script.removesuffix(".py") in PER_VARIANT else 1 for script in scripts
    }
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {variants} variants: "
        + ", ".join(f"{s.removesuffix('.py')} x{n}" for s, n in runs.items())
    )
    with tempfile.TemporaryDirectory() as tmp:
        trees = {args.baseline: baseline_tree(args.baseline, Path(tmp) / "tree"), "this tree": REPO}
        best = measure(trees, scripts, args.repeats)
        projects = {
            label: noop_project(tree, Path(tmp) / "noop" / str(number))
            for number, (label, tree) in enumerate(trees.items())
        }
        noop = dict.fromkeys(trees, float("inf"))
        for _ in range(args.repeats):
            for label, tree in trees.items():
                project = projects[label]
                if project is not None:
                    noop[label] = min(noop[label], noop_seconds(tree, project))
    report(trees, scripts, runs, best, noop, args.repro_seconds)


def measure(
    trees: dict[str, Path], scripts: list[str], repeats: int
) -> dict[tuple[str, str, str], float]:
    """Best of ``repeats`` imports and ``--help`` seconds per tree and script, interleaved."""
    best = {
        (tree, script, kind): float("inf")
        for tree in trees
        for script in scripts
        for kind in ("imports", "help")
    }
    for _ in range(repeats):
        for script in scripts:
            for label, tree in trees.items():
                lines = stage_imports(tree / "stages" / script)
                key = (label, script, "imports")
                best[key] = min(best[key], import_seconds(tree / "src", lines))
                key = (label, script, "help")
                best[key] = min(best[key], help_seconds(tree, script))
    return best


def report(
    trees: dict[str, Path],
    scripts: list[str],
    runs: dict[str, int],
    best: dict[tuple[str, str, str], float],
    noop: dict[str, float],
    repro_seconds: float | None,
) -> None:
    """The table: per stage and tree, imports and ``--help`` (and the train stage's no-op);
    the sums over a default make repro, with their share of ``repro_seconds``."""
    print(
        f"{'stage':10} {'runs':>4} | "
        + " | ".join(f"{label:>9} imports  --help   no-op" for label in trees)
    )
    totals = dict.fromkeys(trees, 0.0)
    for script in scripts:
        cells = []
        for label in trees:
            seconds = noop[label] if script == "train.py" else float("inf")
            shown = f"{seconds:5.2f} s" if seconds < float("inf") else "    n/a"
            cells.append(
                f"{best[(label, script, 'imports')]:13.2f} s {best[(label, script, 'help')]:5.2f} s"
                f" {shown}"
            )
            totals[label] += runs[script] * best[(label, script, "imports")]
        print(f"{script.removesuffix('.py'):10} {runs[script]:4d} | " + " | ".join(cells))

    def share(seconds: float) -> str:
        if not repro_seconds:
            return ""
        return f", {seconds / repro_seconds:.0%} of a {repro_seconds:.0f} s make repro"

    for label, seconds in totals.items():
        print(
            f"start-up of a default make repro, {label}: {seconds:.1f} s of imports{share(seconds)}"
        )
        if noop[label] < float("inf"):
            forced = runs["train.py"] * noop[label]
            print(f"  no-op train x{runs['train.py']} ({label}): {forced:.1f} s{share(forced)}")


if __name__ == "__main__":
    main()
