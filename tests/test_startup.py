"""Stage start-up: a stage process imports the heavy libraries only where its work needs
them (MLflow where a run is logged, scikit-learn where a GMM is fit, torch._dynamo where a
training compiles), so that a stage with little to do finishes in little time. Each check runs
a fresh interpreter and looks at ``sys.modules``; nothing here is timed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tiny_stage import tiny_trained_project

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "sklearn", "torch._dynamo")
# "module:function" as stages/*.py name them for stage_main (run and relaunch).
TARGET = re.compile(r'"(vaelab[\w.]*):\w+"')


def loaded_after(code: str, names: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``names`` a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([n for n in {names!r} if n in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent)},
        timeout=300,
    )
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def stage_modules() -> list[tuple[str, str]]:
    """(stage script, module) for every module a stage script names."""
    return [
        (script.stem, module)
        for script in sorted((REPO / "stages").glob("*.py"))
        for module in TARGET.findall(script.read_text())
    ]


def test_every_stage_names_its_modules() -> None:
    stages = {stage for stage, _ in stage_modules()}
    assert stages == {path.stem for path in (REPO / "stages").glob("*.py")}


@pytest.mark.parametrize(("stage", "module"), stage_modules())
def test_importing_a_stage_imports_no_heavy_library(stage: str, module: str) -> None:
    # What a stage process has loaded when its work begins: its module and vaelab.stage.
    assert loaded_after(f"import vaelab.stage, {module}") == [], stage


def test_an_auroc_needs_no_scikit_learn() -> None:
    code = (
        "from vaelab.measures.image_measures import auroc\n"
        "assert auroc([0.1, 0.5, 0.5], [0.5, 0.9]) == 5 / 6"
    )
    assert loaded_after(code) == []


@pytest.mark.slow
def test_an_evaluate_stage_imports_no_mlflow_nor_scikit_learn(
    tmp_path, tiny_params_dict, make_params
) -> None:
    # A whole evaluate stage of a trained tiny variant: an AUROC, no MLflow run, no optimiser.
    root, _ = tiny_trained_project(tmp_path, tiny_params_dict, make_params)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "stages" / "evaluate.py"), "vae"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (root / "metrics" / "eval" / "vae.json").is_file()
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "torch" in imported and not imported & set(HEAVY)
