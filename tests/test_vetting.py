"""Registry models are vetted before they load: a foreign or doctored pyfunc runs nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from tests.support.trained import save_variant, tiny_params, workspace_fixture, write_eval
from vaelab.cli import main
from vaelab.registry.register import run_register

workspace = pytest.fixture(workspace_fixture)

MARKER = "ran-foreign-code"


class _Touch:
    """Unpickling this calls os.system: what a hostile pickled pyfunc does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class EvilModel(mlflow.pyfunc.PythonModel):
    def __init__(self, path: Path) -> None:
        self.payload = _Touch(path)

    def predict(self, context, model_input, params=None):
        return model_input


def use_store(ws) -> None:
    """This test's store and an experiment of its own: no URI or experiment id left by an earlier
    test."""
    mlflow.set_tracking_uri(ws.uri)
    mlflow.set_registry_uri(ws.uri)
    mlflow.set_experiment("someone-else")


def run_cli(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vaelab: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def register_genuine(ws) -> str:
    save_variant(ws.models, "vae")
    write_eval(ws.metrics, "vae", 0.05)
    run_register(tiny_params(), models_root=ws.models, metrics_root=ws.metrics)
    return "models:/vaelab-vae/1"


def test_a_pickled_pyfunc_in_the_registry_is_refused_before_it_unpickles(workspace, capsys):
    marker = workspace.root / MARKER
    use_store(workspace)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="evil", python_model=EvilModel(marker))
    mlflow.register_model(info.model_uri, "vaelab-evil")
    marker.unlink(missing_ok=True)  # logging may have unpickled it once, here in the test

    out = workspace.root / "evil.png"
    error = run_cli(["generate", "--model", "models:/vaelab-evil/1", "--out", str(out)], capsys)
    assert "refused before loading: it is a pickled python model" in error
    assert not marker.exists() and not out.exists()


def test_a_models_from_code_pyfunc_with_other_code_is_refused(workspace, capsys, tmp_path):
    marker = workspace.root / MARKER
    code = tmp_path / "model_code.py"  # vaelab's name, someone else's code
    code.write_text(
        "import pathlib\n"
        "from mlflow.models import set_model\n"
        "from vaelab.registry.pyfunc import VaelabPyfunc\n"
        f"pathlib.Path({str(marker)!r}).touch()\nset_model(VaelabPyfunc())\n"
    )
    folder = save_variant(workspace.models, "vae") / "seed0"
    use_store(workspace)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="vae",
            python_model=str(code),
            artifacts={"weights": str(folder / "model.pt"), "config": str(folder / "config.json")},
        )
    marker.unlink(missing_ok=True)

    error = run_cli(
        ["generate", "--model", info.model_uri, "--out", str(workspace.root / "s.png")], capsys
    )
    assert "its model_code.py differs from the installed vaelab's" in error
    assert not marker.exists()


def _doctor(mlmodel: dict, case: str, folder: Path) -> None:
    pyfunc = mlmodel["flavors"]["python_function"]
    if case == "another flavour":
        mlmodel["flavors"]["sklearn"] = {"pickled_model": "model.pkl"}
    elif case == "code paths":
        (folder / "code" / "vaelab").mkdir(parents=True)
        pyfunc["code"] = "code"
    elif case == "pickled loader":
        pyfunc["loader_module"] = "mlflow.pyfunc.model"
        pyfunc["python_model"] = "python_model.pkl"
    elif case == "artifact outside":
        pyfunc["artifacts"]["weights"]["path"] = "../../outside/model.pt"
    elif case == "extra artifact":
        pyfunc["artifacts"]["extra"] = {"path": "artifacts/config.json"}
    elif case == "unknown code file":
        pyfunc["model_code_path"] = "/somewhere/agent.py"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("another flavour", "its flavours are python_function, sklearn"),
        ("code paths", "it ships code paths ('code')"),
        ("pickled loader", "it is a pickled python model"),
        (
            "artifact outside",
            "its weights artifact '../../outside/model.pt' is not a model.pt inside the model",
        ),
        ("extra artifact", "its artifacts are config, extra, weights"),
        ("unknown code file", "its model code '/somewhere/agent.py' is not one of vaelab's"),
    ],
)
def test_a_doctored_vaelab_model_is_refused(workspace, capsys, case, message):
    uri = register_genuine(workspace)
    folder = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workspace.root / "dl"))
    )
    outside = workspace.root / "outside"
    outside.mkdir()
    shutil.copy(folder / "artifacts" / "model.pt", outside / "model.pt")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    _doctor(mlmodel, case, folder)
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    error = run_cli(
        ["generate", "--model", str(folder), "--out", str(workspace.root / "s.png")], capsys
    )
    assert f"--model {folder}: refused before loading: {message}" in error


def test_the_genuine_model_passes_the_vetting_from_the_registry_and_a_folder(workspace):
    uri = register_genuine(workspace)
    folder = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(workspace.root / "dl")
    )
    for ref, out in ((uri, "a.png"), (folder, "b.png"), ("models:/vaelab-vae@champion", "c.png")):
        main(["generate", "--model", ref, "-n", "4", "--out", str(workspace.root / out)])
    first = (workspace.root / "a.png").read_bytes()
    assert (
        first == (workspace.root / "b.png").read_bytes() == (workspace.root / "c.png").read_bytes()
    )
    assert np.frombuffer(first, dtype=np.uint8).size > 0
