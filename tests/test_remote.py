"""A DVC remote and the pull-request loop, in a temporary git repository on the embedded lfw.

One tiny pipeline (one VAE, one seed, one epoch) is reproduced and pushed to a local
directory remote. A fresh clone pulls it and has nothing to reproduce; a `git worktree`
of the same commit reproduced from scratch on this machine gives the same evaluation
bytes, and `vaelab report --base-dir` calls every variant "no significant change".
One test, so that the pipeline is reproduced twice, not four times.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.project import copy_project
from tests.support.project import run as _run
from vaelab.measures.headline import SHARPNESS_HEADLINE

DVC = [sys.executable, "-m", "dvc"]
VAELAB = [sys.executable, "-m", "vaelab.cli"]


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def pushed(tmp_path: Path) -> Path:
    """The project reproduced, pushed to ``tmp_path/remote`` and committed (tagged ``base``)."""
    repo = copy_project(tmp_path / "project")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update({"epochs": 1, "batch_size": 32, "seeds": 1})
    params["models"] = {"small_vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4}}
    params["evaluate"].update(
        {
            "batch_size": 8,
            "samples": 4,
            "show": 4,
            "radii": [1.0],
            "radius_samples": 2,
            "interpolation": {"pairs": 1, "steps": 3, "method": "linear"},
            "chain": None,
        }
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([*DVC, "remote", "add", "-d", "storage", str(tmp_path / "remote")], repo)
    _run([*DVC, "repro"], repo)
    _run([*DVC, "push"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-q", "-m", "reproduced and pushed"], repo)
    _run(["git", "tag", "base"], repo)
    return repo


@pytest.mark.slow
def test_push_clone_pull_reproduce_nothing_then_the_two_side_report(pushed: Path, tmp_path: Path):
    # 1. A fresh clone pulls what was pushed and has nothing to reproduce.
    assert any((tmp_path / "remote").rglob("*")), "dvc push wrote nothing to the remote"
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(pushed), str(clone)], tmp_path)
    assert _run([*DVC, "remote", "list"], clone).stdout.split()[:2] == [
        "storage",
        str(tmp_path / "remote"),
    ]
    assert not (clone / "models").exists()

    _run([*DVC, "pull"], clone)
    assert (clone / "models" / "small_vae" / "seed0" / "model.pt").read_bytes() == (
        pushed / "models" / "small_vae" / "seed0" / "model.pt"
    ).read_bytes()
    # register always runs (its output is the MLflow registry, which DVC cannot see); nothing
    # else may.
    status = _run([*DVC, "status"], clone).stdout
    assert re.sub(r"\s+", " ", status).strip() == "register: always changed", status
    again = _run([*DVC, "repro"], clone)
    assert ran(again.stdout) == {"register"}, again.stdout

    # 2. The PR workflow's comparison of a change that changes no stage: the base, as a git
    # worktree, reproduced again here from scratch (no pull), against the head's workspace.
    (pushed / "NOTES.md").write_text("A change that changes no stage.\n")
    _run(["git", "add", "NOTES.md"], pushed)
    _run(["git", "commit", "-q", "-m", "head: a note"], pushed)
    base = tmp_path / "base"
    _run(["git", "worktree", "add", "-q", "--detach", str(base), "base"], pushed)
    rerun = _run([*DVC, "repro"], base)
    assert {"train@small_vae", "evaluate@small_vae"} <= ran(rerun.stdout)
    record = Path("metrics") / "eval" / "small_vae.json"
    # Deterministic, end to end: the headline, every detail and the curves.
    for same in (
        record,
        Path("metrics/detail/eval/small_vae.json"),
        Path("metrics/history/small_vae.csv"),
    ):
        assert (base / same).read_bytes() == (pushed / same).read_bytes(), same

    report = _run(
        [*VAELAB, "report", "--rev", "base", "--base-dir", str(base), "--out", "reports/pr.md"],
        pushed,
    )
    text = (pushed / "reports" / "pr.md").read_text()
    verdicts = [line for line in text.splitlines() if line.startswith("- **")]
    assert verdicts and all(
        ": no significant change, " in line and "(Δ +0.0, +0.0%;" in line for line in verdicts
    )
    assert "small_vae: no significant change" in report.stdout
    evaluated = json.loads((pushed / record).read_text())
    assert f"{evaluated[SHARPNESS_HEADLINE]:.5g}" in verdicts[0]
    assert "`base` (`" in text and "is read from the workspace of" in text
    assert "No params changed." in text
    # No metric differs at all: the timings are not metrics.
    assert "No metrics changed." in text.split("## Metrics", 1)[1].split("## Figures", 1)[0]
    figures = [
        line for line in text.split("## Figures", 1)[1].splitlines() if line.startswith("| `")
    ]
    assert figures and all("(unchanged)" in line for line in figures)
