"""Write or check each DVC stage's ``deps`` on ``src/vaelab``: every file its script imports.

A stage reruns when one of its ``deps`` changes, so each stage of ``dvc.yaml`` lists, one
file per line, every file of ``src/vaelab`` that running its script imports. The import
closure is computed from the sources with ``ast``: every ``import`` and ``from`` statement,
also inside functions, except those under ``if TYPE_CHECKING:``; the ``"module:function"``
string a stage script hands ``stage_main`` (which imports it by name later); and the
``__init__.py`` of every package on the way.

    python scripts/dvc_deps.py --check [--file dvc.yaml]   # exit 1, listing what is stale
    python scripts/dvc_deps.py --write [--file dvc.yaml]   # the same as `make deps`

``--write`` edits the text of each stage's ``deps`` block and nothing else: the entries under
``src/vaelab`` (a folder too, but not a ``${...}`` templated one) are replaced by the sorted
closure, at the place of the first of them (else right after the stage script, which is put
first when missing), and every other entry, comment and line of the file stays as it is. A
stage's script is the first ``.py`` file its ``cmd`` names; a stage without one is left alone.
Exit status: 0 current (or written), 1 stale (``--check``), 2 a ``dvc.yaml`` it cannot edit.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "vaelab"
SRC_DEPS = f"src/{PACKAGE}"
FIX = "python scripts/dvc_deps.py --write"


class DepsError(Exception):
    """A ``dvc.yaml`` whose deps this script cannot edit as text, or a stage script missing."""


# --- the import closure -------------------------------------------------------------------


def module_file(name: str, src: Path = SRC) -> Path | None:
    """``vaelab.evaluate.evaluate`` → ``src/vaelab/evaluate/evaluate.py`` (or a package's
    ``__init__.py``)."""
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _stage_main_targets(node: ast.Call) -> set[str]:
    """The modules of ``stage_main(doc, "vaelab.evaluate.evaluate:run_evaluate")`` (and of a
    ``relaunch="module:function"`` keyword), imported by name later."""
    if getattr(node.func, "id", None) != "stage_main":
        return set()
    return {
        arg.value.partition(":")[0]
        for arg in [*node.args, *(keyword.value for keyword in node.keywords)]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and ":" in arg.value
    }


def _from_import(node: ast.ImportFrom, package: str) -> set[str]:
    """The module of a ``from`` statement and each name in it (a name may be a submodule)."""
    if node.level:
        parent = package.split(".")[: -node.level]
        base = ".".join(parent + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def imported_modules(path: Path, src: Path = SRC) -> set[str]:
    """The ``vaelab`` modules ``path`` imports at run time (submodules named in ``from`` too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        ".".join(path.relative_to(src).with_suffix("").parts) if path.is_relative_to(src) else ""
    )
    if path.name == "__init__.py":
        package += (
            ".__init__"  # so that `from . import x` in a package's __init__ means the package
        )
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Call):
            found.update(_stage_main_targets(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.update(_from_import(node, package))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def siblings_read(path: Path) -> set[Path]:
    """The ``.py`` files beside ``path`` that it names as ``Path(__file__).with_name("x.py")``:
    code it hands on by path (the registry logs its models-from-code files so), not imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "with_name"
            and isinstance(node.func.value, ast.Call)
            and any(isinstance(a, ast.Name) and a.id == "__file__" for a in node.func.value.args)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).endswith(".py")
        ):
            sibling = path.with_name(str(node.args[0].value))
            if sibling.is_file():
                found.add(sibling)
    return found


def import_closure(script: Path, src: Path = SRC) -> set[Path]:
    """Every file under ``src/vaelab`` that running ``script`` imports, packages' ``__init__``
    included, and the files those name by path beside themselves (:func:`siblings_read`)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        for sibling in siblings_read(current) - seen:
            seen.add(sibling)
            todo.append(sibling)
        for name in imported_modules(current, src):
            parts = name.split(".")
            for depth in range(
                1, len(parts) + 1
            ):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                file = module_file(".".join(parts[:depth]), src)
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


# --- the stages of dvc.yaml ---------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of ``dvc.yaml``: its script and its ``deps`` node (``None``: it has none)."""

    name: str
    script: str
    deps: yaml.SequenceNode | None


def _get(node: yaml.Node, key: str) -> yaml.Node | None:
    """The value of ``key`` in a mapping node, or ``None``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                return value
    return None


def _script_of(cmd: yaml.Node | None) -> str | None:
    """The first ``.py`` file a stage's ``cmd`` (one command or a list of them) runs."""
    commands = cmd.value if isinstance(cmd, yaml.SequenceNode) else [cmd] if cmd is not None else []
    for command in commands:
        if isinstance(command, yaml.ScalarNode):
            for word in command.value.split():
                if word.endswith(".py"):
                    return word.removeprefix("./")
    return None


def stages(text: str) -> list[Stage]:
    """Each stage of a ``dvc.yaml`` text that runs a script (a ``foreach``'s ``do`` body too)."""
    document = yaml.compose(text)
    stages_node = _get(document, "stages") if document is not None else None
    found: list[Stage] = []
    seen: set[int] = set()
    for key_node, stage in stages_node.value if isinstance(stages_node, yaml.MappingNode) else []:
        body = _get(stage, "do") or stage
        script = _script_of(_get(body, "cmd"))
        if script is None:
            continue
        deps = _get(body, "deps")
        if deps is not None and not isinstance(deps, yaml.SequenceNode):
            raise DepsError(f"stage {key_node.value!r}: deps is not a list")
        if deps is not None and id(deps) in seen:
            raise DepsError(
                f"stage {key_node.value!r} shares its deps list with another (a YAML alias)"
            )
        seen.add(id(deps))
        found.append(Stage(key_node.value, script, deps))
    return found


def stage_scripts(dvc_yaml: Path = REPO / "dvc.yaml", root: Path = REPO) -> dict[str, Path]:
    """Stage name → the script it runs."""
    return {stage.name: root / stage.script for stage in stages(dvc_yaml.read_text())}


def wanted_deps(script: Path, root: Path = REPO) -> list[str]:
    """The sorted ``src/vaelab/...py`` files (relative to ``root``) that ``script`` imports."""
    if not script.is_file():
        raise DepsError(f"{script.relative_to(root).as_posix()}: the stage script does not exist")
    return sorted(
        path.relative_to(root).as_posix() for path in import_closure(script, root / "src")
    )


def _normal(dep: str) -> str:
    """A dep path as compared: no leading ``./``, no trailing ``/``."""
    return dep.removeprefix("./").rstrip("/")


def is_src_dep(dep: str) -> bool:
    """Whether this script owns the dep: a path under ``src/vaelab`` that is not templated."""
    path = _normal(dep)
    return "${" not in path and (path == SRC_DEPS or path.startswith(SRC_DEPS + "/"))


# --- the text edit ------------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One stage's new deps: drop the ``remove`` lines, put ``insert`` before line ``at``."""

    stage: str
    at: int
    remove: frozenset[int]
    insert: tuple[str, ...]
    missing: tuple[str, ...]
    superfluous: tuple[str, ...]


def _item_lines(name: str, deps: yaml.SequenceNode, lines: list[str]) -> list[tuple[int, str, str]]:
    """``(line index, value, text before the value)`` of each plain ``- path`` entry of ``deps``."""
    if deps.flow_style or not deps.value:
        raise DepsError(f"stage {name!r}: write its deps as a block list, one '- path' per line")
    items = []
    for item in deps.value:
        if not isinstance(item, yaml.ScalarNode):
            continue  # a dep with options is never one of ours; its lines stay
        line, column = item.start_mark.line, item.start_mark.column
        prefix = lines[line][:column]
        alone = lines[line][item.end_mark.column :].strip() if item.end_mark.line == line else "?"
        if prefix.strip() != "-" or (alone and not alone.startswith("#")):
            if is_src_dep(item.value):
                raise DepsError(
                    f"stage {name!r}: write {item.value} alone on its line, as '- path'"
                )
            continue
        items.append((line, item.value, prefix))
    return items


def stage_edit(stage: Stage, lines: list[str], root: Path = REPO) -> Edit:
    """The edit that makes ``stage``'s src deps the sorted import closure of its script."""
    wanted = wanted_deps(root / stage.script, root)
    if stage.deps is None:
        raise DepsError(f"stage {stage.name!r} has no deps: add one listing {stage.script}")
    items = _item_lines(stage.name, stage.deps, lines)
    if not items:
        raise DepsError(
            f"stage {stage.name!r}: no deps entry written as '- path' to align new ones with"
        )
    newline = "\r\n" if lines[items[0][0]].endswith("\r\n") else "\n"
    prefix = items[0][2]
    ours = [(line, value) for line, value, _ in items if is_src_dep(value)]
    scripts = [line for line, value, _ in items if _normal(value) == stage.script]
    new = [f"{prefix}{path}{newline}" for path in wanted]
    if ours:
        at = ours[0][0]
    elif scripts:
        at = scripts[0] + 1
    else:
        at = stage.deps.value[0].start_mark.line
    if not scripts:
        new.insert(0, f"{prefix}{stage.script}{newline}")
    listed = {_normal(value) for _, value in ours}
    return Edit(
        stage=stage.name,
        at=at,
        remove=frozenset(line for line, _ in ours),
        insert=tuple(new),
        missing=tuple(sorted(set(wanted) - listed) + ([] if scripts else [stage.script])),
        superfluous=tuple(sorted(value for _, value in ours if _normal(value) not in wanted)),
    )


def apply(lines: list[str], edits: list[Edit]) -> list[str]:
    """``lines`` with every edit made (the edits' lines do not overlap)."""
    remove = set().union(*(edit.remove for edit in edits))
    insert = {edit.at: edit.insert for edit in edits}
    out: list[str] = []
    for index in range(len(lines) + 1):
        out.extend(insert.get(index, ()))
        if index < len(lines) and index not in remove:
            out.append(lines[index])
    return out


def plan(text: str, root: Path = REPO) -> list[Edit]:
    """For each stage whose src deps are not the sorted closure of its script, the edit that
    makes them so."""
    lines = text.splitlines(keepends=True)
    edits = [stage_edit(stage, lines, root) for stage in stages(text)]
    return [edit for edit in edits if apply(lines, [edit]) != lines]


def rewrite(text: str, root: Path = REPO) -> str:
    """``text`` (a ``dvc.yaml``) with every stage's src deps the sorted closure of its script."""
    return "".join(apply(text.splitlines(keepends=True), plan(text, root)))


# --- the command line ---------------------------------------------------------------------


def report(name: str, edits: list[Edit]) -> str:
    """What ``--check`` prints for stale stages: per stage, the missing and the superfluous deps."""
    out = [
        f"{name}: the deps of {len(edits)} stage(s) do not match their imports; "
        f"fix: {FIX} (make deps)"
    ]
    for edit in edits:
        out.append(f"  {edit.stage}:")
        out.extend(f"    missing:     {dep}" for dep in edit.missing)
        out.extend(f"    superfluous: {dep}" for dep in edit.superfluous)
        if not edit.missing and not edit.superfluous:
            out.append(
                "    src deps not one sorted run of files (order, duplicates, other deps between)"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``--check`` or ``--write`` the src deps of every stage; the exit status (see above)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 listing each stale stage's deps")
    mode.add_argument(
        "--write", action="store_true", help="rewrite the src deps in place, comments kept"
    )
    parser.add_argument(
        "--file", type=Path, default=REPO / "dvc.yaml", help="default: the repo's dvc.yaml"
    )
    args = parser.parse_args(argv)
    text = args.file.read_bytes().decode()
    try:
        edits = plan(text, REPO)
    except (DepsError, yaml.YAMLError) as error:
        print(f"{args.file}: {error}", file=sys.stderr)
        return 2
    if args.check:
        print(
            report(str(args.file), edits)
            if edits
            else f"{args.file}: every stage's src deps are current"
        )
        return 1 if edits else 0
    if edits:
        args.file.write_bytes("".join(apply(text.splitlines(keepends=True), edits)).encode())
    print(
        f"{args.file}: rewrote the deps of {', '.join(e.stage for e in edits)}"
        if edits
        else f"{args.file}: already current"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
