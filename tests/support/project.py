"""A copy of the project in a temporary git + DVC repository, for tests that run `dvc` itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "src")


def project_env(cwd: Path) -> dict[str, str]:
    """This environment for a command in the copy at ``cwd``: the venv first on PATH, vaelab
    from the copy, a git identity, the copy's own MLflow store and no DVC experiment."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(cwd / "src"),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        env.pop(name, None)  # the copy's own store, and no experiment this process may run in
    return env


def run(
    args: list[str], cwd: Path, *, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``args`` in ``cwd`` with :func:`project_env`; with ``check`` a failure is an
    AssertionError carrying the output."""
    done = subprocess.run(
        args, cwd=cwd, env=project_env(cwd), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def copy_project(dest: Path) -> Path:
    """The pipeline's files in ``dest``, at 16x16 with one prepare worker, as a git + DVC
    repository."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"]["image_size"] = 16
    params["data"]["workers"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run([sys.executable, "-m", "dvc", "init", "-q"], dest)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], dest)
    shutil.copytree(REPO / ".dvc" / "plots", dest / ".dvc" / "plots")  # the custom plot templates
    return dest


def small_pipeline(params: dict, **train: object) -> dict:
    """Two small variants (``small_ae``, ``small_vae``) and a quick evaluation, in place of
    the default models: a whole `dvc repro` in about a minute. ``train`` updates
    ``params["train"]``."""
    params["train"].update({"batch_size": 32, **train})
    params["models"] = {
        "small_ae": {"arch": "ae_pool"},
        "small_vae": {"arch": "vae_conv", "filters": [8, 16], "z_dim": 4},
    }
    params["evaluate"].update(
        {
            "batch_size": 8,
            "samples": 4,
            "show": 4,
            "radii": [1.0, 4.0],
            "radius_samples": 2,
            "interpolation": {"pairs": 1, "steps": 3, "method": "spherical"},
            "chain": {"vae": "small_vae", "ae": "small_ae", "passes": 2},
        }
    )
    return params
