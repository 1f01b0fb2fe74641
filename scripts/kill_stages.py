"""Kill `dvc repro` at random points of every stage, rerun it, and check what is left.

For issue 13's fault figures. In a throwaway copy of the project (16x16, two small
variants, 3 seeds) it runs one uninterrupted `dvc repro` as the reference, then, for each
trial, forces one stage (`dvc repro -f -s STAGE`; a train trial also deletes that
variant's checkpoints so it trains from scratch), waits until DVC starts it, sleeps a
random fraction of the stage's reference duration, and SIGKILLs either the whole process
group (dvc and the stage: power cut, OOM killer) or dvc alone (the stage must notice its
parent died). Then a plain `dvc repro` must bring every output back byte-identical to the
reference (md5 of every file under data/prepared, models, metrics, reports, except the
timing files, the registry's run ids and the detail report's seconds), and no temporary file of
an interrupted write may remain. Every training run in the project's MLflow store must hold
each epoch of each metric once (a resumed training continues its run without resending the
epochs the run already had).

    .venv/bin/python scripts/kill_stages.py [--trials 14] [--seed 0] [--keep DIR]

Prints one line per trial and a summary; exits 1 if any output differs or any temporary
is left. Takes about 20 minutes on two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.project import copy_project, project_env, run, small_pipeline  # noqa: E402

OUTPUT_ROOTS = ("data/prepared", "models", "metrics", "reports")
# What legitimately differs between two runs: wall-clock timings and MLflow run ids.
VARYING = (
    re.compile(r"^metrics/timing/"),
    re.compile(r"^metrics/registry\.json$"),
    re.compile(r"^reports/compare_detail\.md$"),  # its variant table has the training seconds
)
TEMPORARY = re.compile(r"^\..+\.(tmp|old)-\d+")
STARTED = re.compile(r"Running stage '([^']+)'")


def small_params(root: Path) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    small_pipeline(params, epochs=20, seeds=3, checkpoint_every=5)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def digests(root: Path) -> dict[str, str]:
    found = {}
    for top in OUTPUT_ROOTS:
        for path in sorted((root / top).rglob("*")):
            name = path.relative_to(root).as_posix()
            if path.is_file() and not any(p.match(name) for p in VARYING):
                found[name] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


def leftovers(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob(".*")
        if TEMPORARY.match(p.name) and ".git" not in p.parts and ".dvc" not in p.parts
    )


def timed_repro(root: Path) -> dict[str, float]:
    """An uninterrupted `dvc repro`; seconds per stage, from when DVC announced each."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    starts: list[tuple[str, float]] = []
    for line in process.stdout:
        if match := STARTED.search(line):
            starts.append((match.group(1), time.monotonic()))
    assert process.wait() == 0, "the reference dvc repro failed"
    ends = [t for _, t in starts[1:]] + [time.monotonic()]
    return {stage: end - start for (stage, start), end in zip(starts, ends, strict=True)}


def descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        for child in map(int, text.split()):
            children += [child, *descendants(child)]
    return children


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def repeated_epochs(root: Path) -> list[str]:
    """The training runs of the project's store that hold an epoch of a metric twice, as
    ``run name: metric steps``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vaelab")
    if experiment is None:
        return []
    found = []
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    for train_run in runs:
        for key in train_run.data.metrics:
            steps = [m.step for m in client.get_metric_history(train_run.info.run_id, key)]
            if len(steps) != len(set(steps)):
                found.append(f"{train_run.info.run_name}: {key} {sorted(steps)}")
                break
    return found


def kill_trial(root: Path, stage: str, delay: float, whole_group: bool) -> dict[str, object]:
    """Force ``stage``, SIGKILL it ``delay`` s after DVC starts it; how long its children
    outlived dvc."""
    if stage.startswith("train@"):
        shutil.rmtree(root / "checkpoints" / stage.split("@")[1], ignore_errors=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "-f", "-s", stage],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in process.stdout:
        if STARTED.search(line):
            break
    time.sleep(delay)
    finished = process.poll() is not None
    children = descendants(process.pid)
    if whole_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait()
    killed_at = time.monotonic()
    deadline = killed_at + 30
    while any(alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    gone = time.monotonic() - killed_at
    survivors = [c for c in children if alive(c)]
    for child in survivors:
        os.kill(child, signal.SIGKILL)
    return {
        "finished_before_kill": finished,
        "children": len(children),
        "survivors": len(survivors),
        "children_gone_s": round(gone, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = args.keep or Path(tempfile.mkdtemp(prefix="vaelab-kills-"))
    root = copy_project(work / "project")
    small_params(root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "kill trials"], root)
    durations = timed_repro(root)
    reference = digests(root)
    print(
        f"reference: {len(reference)} output files; stage seconds "
        + ", ".join(f"{s} {d:.1f}" for s, d in durations.items()),
        flush=True,
    )

    stages = list(durations)
    order = [stages[i % len(stages)] for i in range(args.trials)]
    rng.shuffle(order)
    failures = 0
    for number, stage in enumerate(order, 1):
        delay = rng.uniform(0.05, 0.95) * durations[stage]
        whole_group = number % 2 == 1
        kill = kill_trial(root, stage, delay, whole_group)
        rerun = run([sys.executable, "-m", "dvc", "repro"], root, check=False, timeout=1800)
        now = digests(root)
        differ = sorted(k for k in reference.keys() | now.keys() if reference.get(k) != now.get(k))
        left = leftovers(root)
        repeats = repeated_epochs(root)
        ok = (
            rerun.returncode == 0
            and not differ
            and not left
            and not repeats
            and kill["survivors"] == 0
        )
        failures += not ok
        print(
            f"trial {number:2d}: {stage:20s} kill {'group' if whole_group else 'dvc  '} "
            f"at {delay:5.1f} s"
            f"{' (stage already done)' if kill['finished_before_kill'] else ''}; "
            f"children {kill['children']}, gone in {kill['children_gone_s']} s, "
            f"alive after 30 s {kill['survivors']}; rerun rc {rerun.returncode}; "
            f"differing outputs {len(differ)}; leftover temporaries {len(left)}; "
            f"runs with an epoch twice {len(repeats)}"
            + (
                f"\n    differ: {differ[:5]}\n    left: {left[:5]}\n    twice: {repeats[:3]}"
                f"\n{rerun.stderr[-2000:]}"
                if not ok
                else ""
            ),
            flush=True,
        )
    print(
        f"{args.trials} kills, {args.trials - failures} reruns byte-identical with no leftovers, "
        f"{failures} not; work folder {work}"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
