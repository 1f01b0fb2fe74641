"""Each DVC stage lists, in its ``deps``, every file of ``src/vaelab`` its script imports.

The import closure is computed from the sources by ``scripts/dvc_deps.py`` (every
``import``/``from`` statement, also inside functions, except those under ``if TYPE_CHECKING:``,
and the ``"module:function"`` a stage script hands ``stage_main``), which also writes the deps
(``make deps``), so a new import that the stage does not list fails here instead of leaving
DVC blind to a change.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "dvc_deps.py"
DVC_YAML = REPO / "dvc.yaml"


def _load_script() -> ModuleType:
    """``scripts/dvc_deps.py`` as a module (``scripts`` is no package)."""
    spec = importlib.util.spec_from_file_location("dvc_deps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


dvc_deps = _load_script()
SRC = dvc_deps.SRC
module_file = dvc_deps.module_file
imported_modules = dvc_deps.imported_modules
import_closure = dvc_deps.import_closure
siblings_read = dvc_deps.siblings_read
FIX = "python scripts/dvc_deps.py --write"


def stale(text: str) -> str:
    """``text`` with train missing ``src/vaelab/runtime.py`` and listing
    ``registry/register.py``."""
    lines = text.splitlines(keepends=True)
    train = lines.index("  train:\n")
    runtime = lines.index("        - src/vaelab/runtime.py\n", train)
    data = lines.index("        - data/prepared\n", train)
    lines[data + 1 : data + 1] = ["        - src/vaelab/registry/register.py\n"]
    del lines[runtime]
    return "".join(lines)


def test_every_stage_runs_a_script_whose_deps_are_managed():
    names = set(yaml.safe_load(DVC_YAML.read_text())["stages"])
    assert set(dvc_deps.stage_scripts(DVC_YAML)) == names


@pytest.mark.parametrize("stage", sorted(dvc_deps.stage_scripts(DVC_YAML)))
def test_every_imported_source_is_a_dependency(stage):
    text = DVC_YAML.read_text()
    lines = text.splitlines(keepends=True)
    (found,) = [s for s in dvc_deps.stages(text) if s.name == stage]
    edit = dvc_deps.stage_edit(found, lines)
    assert dvc_deps.apply(lines, [edit]) == lines, dvc_deps.report("dvc.yaml", [edit])
    assert FIX in dvc_deps.report("dvc.yaml", [edit])


def test_the_closure_follows_function_level_and_from_imports(tmp_path):
    # Known answer on the real tree: the train stage reaches the model zoo through
    # `from vaelab.models import ...` and the runtime through train/train.py.
    closure = {p.relative_to(SRC).as_posix() for p in import_closure(REPO / "stages" / "train.py")}
    expected = {
        "vaelab/__init__.py",
        "vaelab/models/zoo.py",
        "vaelab/runtime.py",
        "vaelab/train/loop.py",
    }
    assert expected <= closure
    assert "vaelab/registry/register.py" not in closure


def test_type_checking_imports_are_not_followed(tmp_path, monkeypatch):
    fake = tmp_path / "script.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    import vaelab.registry.register\n"
        "def f():\n    from vaelab.errors import UserError\n"
    )
    assert imported_modules(fake) == {"vaelab.errors", "vaelab.errors.UserError"}


def test_the_stage_named_to_stage_main_is_an_import(tmp_path):
    fake = tmp_path / "stage.py"
    fake.write_text(
        "from vaelab.stage import stage_main\n"
        'main = stage_main(__doc__, "vaelab.chain.chain:run_chain")\n'
    )
    assert "vaelab.chain.chain" in imported_modules(fake)


def test_write_restores_a_stale_copy_and_a_second_write_changes_nothing(tmp_path, capsys):
    current = DVC_YAML.read_text()
    copy = tmp_path / "dvc.yaml"
    copy.write_text(stale(current))
    assert copy.read_text() != current
    assert dvc_deps.main(["--write", "--file", str(copy)]) == 0
    assert copy.read_text() == current
    assert "rewrote the deps of train" in capsys.readouterr().out
    assert dvc_deps.main(["--write", "--file", str(copy)]) == 0
    assert copy.read_text() == current
    assert "already current" in capsys.readouterr().out


def test_check_fails_on_a_stale_file_naming_the_fix(tmp_path):
    copy = tmp_path / "dvc.yaml"
    copy.write_text(stale(DVC_YAML.read_text()))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--file", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "  train:\n    missing:     src/vaelab/runtime.py\n" in done.stdout
    assert "    superfluous: src/vaelab/registry/register.py" in done.stdout
    assert FIX in done.stdout
    copy.write_text(DVC_YAML.read_text())
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--file", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


SYNTHETIC = """\
# the pipeline
stages:
  train:
    foreach: ${models}
    do:
      cmd: python stages/train.py ${key}
      # before the deps
      deps:
        - stages/train.py
        # between the script and the sources
        - src/vaelab/models
        - "src/vaelab/stage.py"
        - src/vaelab/${key}.py
        # among the sources
        - src/vaelab/registry/register.py
        - data/prepared  # a trailing comment
      params:
        - seed  # kept
  notes:
    cmd: echo no script
    deps:
      - src/vaelab/registry
"""


def test_write_keeps_comments_templated_and_other_deps_in_place(tmp_path):
    closure = "".join(
        f"        - {dep}\n" for dep in dvc_deps.wanted_deps(REPO / "stages" / "train.py")
    )
    before, after = SYNTHETIC.split(
        '        - src/vaelab/models\n        - "src/vaelab/stage.py"\n'
    )
    expected = before + closure + after.replace("        - src/vaelab/registry/register.py\n", "")
    assert dvc_deps.rewrite(SYNTHETIC) == expected
    assert dvc_deps.rewrite(expected) == expected
    assert [line for line in expected.splitlines() if "#" in line] == [
        line for line in SYNTHETIC.splitlines() if "#" in line
    ]


def test_a_missing_script_is_put_first_and_a_flow_list_is_refused(tmp_path, capsys):
    text = "stages:\n  chain:\n    cmd: python stages/chain.py\n    deps:\n      - models\n"
    lines = dvc_deps.rewrite(text).splitlines()
    assert lines[4:6] == ["      - stages/chain.py", "      - src/vaelab/__init__.py"]
    assert lines[-1] == "      - models"
    flow = tmp_path / "dvc.yaml"
    flow.write_text(
        "stages:\n  chain:\n    cmd: python stages/chain.py\n    deps: [stages/chain.py]\n"
    )
    assert dvc_deps.main(["--check", "--file", str(flow)]) == 2
    assert "block list" in capsys.readouterr().err


def test_files_named_by_path_beside_a_module_are_dependencies(tmp_path):
    # The registry logs its models-from-code files by path: they are deps of register too.
    closure = {
        p.relative_to(SRC).as_posix() for p in import_closure(REPO / "stages" / "register.py")
    }
    assert {"vaelab/registry/model_code.py", "vaelab/registry/decoder_code.py"} <= closure
    module = tmp_path / "mod.py"
    (tmp_path / "code.py").write_text("")
    module.write_text('from pathlib import Path\nCODE = Path(__file__).with_name("code.py")\n')
    assert siblings_read(module) == {tmp_path / "code.py"}
