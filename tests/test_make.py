"""`make repro` checks params.yaml before DVC reads it (DVC's own message names its templating)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def make_repro(folder: Path) -> subprocess.CompletedProcess[str]:
    """``make repro`` in ``folder`` with this test's venv, its install steps (the package, the
    plots page) taken as done (``-o``)."""
    shutil.copy2(REPO / "Makefile", folder / "Makefile")
    return subprocess.run(
        [
            "make",
            "-o",
            str(VENV / ".vaelab-installed"),
            "-o",
            ".dvc/plots/page.html",
            f"VENV={VENV}",
            "repro",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("yaml syntax", "params.yaml: not valid YAML: line 3, column 1:"),
        ("missing file", "params.yaml: file not found"),
        ("unknown data set", "params.yaml: data.dataset: 'imagenet' is not allowed"),
    ],
)
def test_make_repro_stops_on_bad_params_with_the_stages_message(
    tmp_path: Path, case: str, expected: str
):
    if shutil.which("make") is None:
        pytest.fail("make is missing: the README's two commands need it")
    if case == "yaml syntax":
        (tmp_path / "params.yaml").write_text("seed: 0\ndata: {dataset: lfw\n")
    elif case == "unknown data set":
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"]["dataset"] = "imagenet"
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = make_repro(tmp_path)
    assert done.returncode != 0
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("vaelab: error:")]
    assert expected in message and "Traceback" not in done.stderr
    # DVC never ran: make echoes the recipe line it reaches, and it did not reach this one.
    assert "dvc repro" not in done.stdout and not (tmp_path / ".dvc").exists()


def test_a_stage_checks_its_arguments_and_params_before_importing_torch(tmp_path):
    """--help and a params mistake answer without waiting seconds for torch and MLflow."""
    probe = (
        "import runpy, sys; sys.argv = ['stages/evaluate.py'] + sys.argv[1:]\n"
        "try:\n    runpy.run_path('stages/evaluate.py', run_name='__main__')\n"
        "except SystemExit as exit_:\n"
        "    print('torch' in sys.modules, 'mlflow' in sys.modules, exit_.code)\n"
    )
    (tmp_path / "params.yaml").write_text("data: {image_size: -3}\n")
    for args, code in (
        (["--help"], "0"),
        (["vae", "--params", str(tmp_path / "params.yaml")], "2"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.stdout.strip().splitlines()[-1] == f"False False {code}", (
            done.stdout + done.stderr
        )


def test_a_plain_dvc_repro_with_an_unknown_data_set_gives_the_stages_message(tmp_path):
    """Without make's check first: DVC itself must not stop on "Parameters 'data.imagenet' are
    missing" (dvc.yaml interpolated the data set's name into the download stage's params)."""
    from tests.support.project import copy_project, project_env

    root = copy_project(tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["dataset"] = "imagenet"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "download"],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "data.dataset: 'imagenet' is not allowed" in output, output[-2000:]
    assert "are missing" not in output and "Traceback" not in output
