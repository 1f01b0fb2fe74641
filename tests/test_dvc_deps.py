"""Each DVC stage lists, in its ``deps``, every file of ``src/vaelab`` its script imports.

The import closure is computed from the sources (every ``import``/``from`` statement,
also inside functions, except those under ``if TYPE_CHECKING:``, and the
``"module:function"`` a stage script hands ``stage_main``), so a new import that
the stage does not list fails here instead of leaving DVC blind to a change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    """``vaelab.evaluate.evaluate`` → ``src/vaelab/evaluate/evaluate.py`` (or a package's
    ``__init__.py``)."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path) -> set[str]:
    """The ``vaelab`` modules ``path`` imports at run time (submodules named in ``from`` too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        ".".join(path.relative_to(SRC).with_suffix("").parts) if path.is_relative_to(SRC) else ""
    )
    if path.name == "__init__.py":
        package += ".__init__"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "stage_main":
            # stage_main(doc, "vaelab.evaluate.evaluate:run_evaluate"): imported by name after
            # parsing.
            for arg in node.args:
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and ":" in arg.value
                ):
                    found.add(arg.value.partition(":")[0])
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")[: -node.level]
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name == "vaelab" or name.startswith("vaelab.")}


def import_closure(script: Path) -> set[Path]:
    """Every file under ``src/vaelab`` that running ``script`` imports, packages' ``__init__``
    included."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        for name in imported_modules(current):
            parts = name.split(".")
            for depth in range(
                1, len(parts) + 1
            ):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                file = module_file(".".join(parts[:depth]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


def stage_deps() -> dict[str, tuple[Path, list[str]]]:
    """Stage name → (its script, its deps as written in dvc.yaml)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = REPO / body["cmd"].split()[1]
        out[name] = (script, [str(d) for d in body.get("deps", [])])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(
        relative == dep.rstrip("/") or relative.startswith(dep.rstrip("/") + "/") for dep in deps
    )


@pytest.mark.parametrize("stage", sorted(stage_deps()))
def test_every_imported_source_is_a_dependency(stage):
    script, deps = stage_deps()[stage]
    assert covered(script, deps), (
        f"{stage}: deps do not list its own script {script.relative_to(REPO)}"
    )
    missing = sorted(
        p.relative_to(REPO).as_posix() for p in import_closure(script) if not covered(p, deps)
    )
    assert not missing, (
        f"dvc.yaml stage {stage!r} imports these files without listing them in deps: {missing}"
    )


def test_the_closure_follows_function_level_and_from_imports(tmp_path):
    # Known answer on the real tree: the train stage reaches the model zoo through
    # `from vaelab.models import ...` and the runtime through train/run.py.
    closure = {p.relative_to(SRC).as_posix() for p in import_closure(REPO / "stages" / "train.py")}
    assert {
        "vaelab/__init__.py",
        "vaelab/models/zoo.py",
        "vaelab/runtime.py",
        "vaelab/train/loop.py",
    } <= closure
    assert "vaelab/registry/register.py" not in closure


def test_type_checking_imports_are_not_followed(tmp_path, monkeypatch):
    fake = tmp_path / "script.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vaelab.registry.register\n"
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
