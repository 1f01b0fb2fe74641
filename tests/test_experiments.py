"""DVC experiments and MLflow together, in a temporary copy of the project: queued
experiments run in executors under .dvc/tmp/exps/ that DVC deletes, yet their runs and
registry versions land in the project's own mlflow.db, tagged with their names, and
champion stays where the plain repro put it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.project import copy_project, run

DVC = [sys.executable, "-m", "dvc"]
QUEUE_DEADLINE_S = 600


def tiny(repo: Path) -> None:
    """One tiny variant, one seed, one epoch; the smallest evaluation; no chain."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update({"epochs": 1, "batch_size": 32, "seeds": 1})
    params["models"] = {"v": {"arch": "vae_conv", "filters": [4, 8], "z_dim": 2}}
    params["evaluate"].update(
        {
            "batch_size": 32,
            "samples": 4,
            "show": 2,
            "radii": [1.0],
            "radius_samples": 2,
            "interpolation": {"pairs": 1, "steps": 2, "method": "linear"},
            "chain": None,
            "sharpen": {"factors": [0], "unsharp_radius": 1.0, "unsharp_amount": 1.0, "images": 4},
        }
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def wait_for_queue(repo: Path) -> str:
    """``dvc queue status`` once nothing is queued or running (bounded)."""
    deadline = time.monotonic() + QUEUE_DEADLINE_S
    while True:
        status = run([*DVC, "queue", "status"], repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, (
            f"queue still busy after {QUEUE_DEADLINE_S} s:\n{status}"
        )
        time.sleep(2)


@pytest.mark.slow
def test_queued_experiments_log_to_the_projects_store_and_never_move_champion(tmp_path):
    from mlflow import MlflowClient

    repo = copy_project(tmp_path / "project")
    tiny(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    run([*DVC, "repro"], repo)  # a plain repro of committed params: champion is version 1
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)

    for z_dim in (3, 4):
        run(
            [*DVC, "exp", "run", "--queue", "-S", f"models.v.z_dim={z_dim}", "-n", f"z{z_dim}"],
            repo,
        )
    try:
        run([*DVC, "queue", "start"], repo)
        status = wait_for_queue(repo)
    finally:
        run([*DVC, "queue", "stop"], repo, check=False)
    if status.count("Success") != 2:
        logs = "\n".join(
            run([*DVC, "queue", "logs", name], repo, check=False).stdout for name in ("z3", "z4")
        )
        pytest.fail(f"the experiments did not both succeed:\n{status}\n{logs[-6000:]}")

    import mlflow

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        for name in ("z3", "z4"):
            runs = mlflow.search_runs(
                experiment_names=["vaelab"], filter_string=f"tags.dvc_exp_name = '{name}'"
            )
            assert sorted(runs["tags.stage"]) == ["compare", "train", "variant"], name
            assert set(runs["tags.dvc_exp_baseline_rev"]) == {
                run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
            }
            assert set(runs["tags.git_dirty"]) == {
                "true"
            }  # an executor's params differ from its commit
            train = runs[runs["tags.stage"] == "train"].iloc[0]
            assert train["params.model.z_dim"] == name.removeprefix("z")
            assert "metrics.eval.recon.mse" in runs.columns and train["metrics.eval.recon.mse"] > 0
            # Their artifacts outlive the executor: they are under the project's mlruns/.
            assert train["artifact_uri"].startswith((repo / "mlruns").as_uri())
            assert list((repo / "mlruns").rglob("figures/samples.png"))
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = {
            v.tags.get("dvc_exp_name"): int(v.version)
            for v in client.search_model_versions("name='vaelab-v'")
        }
        assert (
            versions == {None: 1, "z3": versions["z3"], "z4": versions["z4"]} and len(versions) == 3
        )
        aliases = client.get_registered_model("vaelab-v").aliases
        assert aliases == {"champion": 1, "exp-z3": versions["z3"], "exp-z4": versions["z4"]}
    finally:
        mlflow.set_tracking_uri(None)
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))
