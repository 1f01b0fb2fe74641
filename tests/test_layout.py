"""The layout rules a reader relies on, held by tests: one package per stage that imports only
downward, no two modules with one file name, no function over 60 lines, and the pre-commit
hooks running what ``make lint`` runs."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "vaelab"
MAX_FUNCTION_LINES = 60

# Each part of vaelab with its floor: a module imports only its own part and lower floors.
# The stage packages share floor 5 and never import one another; data/ (floor 4) is below
# them because its prepared_data module owns the folder every later stage reads.
FLOORS = {
    "errors": 0, "logs": 0, "lifetime": 0, "kernels": 0,
    "io": 1, "stats": 1,
    "config": 2,
    "runtime": 3, "tracking": 3, "tracking_http": 3, "measures": 3, "figures": 3,
    "models": 4,
    "data": 5,
    "train": 6, "evaluate": 6, "chain": 6, "compare": 6, "registry": 6, "prdiff": 6,
    "stage": 7, "cli": 8,
}  # fmt: skip


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(module: str) -> str:
    """``vaelab.evaluate.context`` → ``evaluate``; ``vaelab.cli`` → ``cli``."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def vaelab_imports(path: Path) -> set[str]:
    """Every ``vaelab.*`` module ``path`` imports (at any depth, TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "vaelab":
                found |= {f"vaelab.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("vaelab.")}


def function_lengths(path: Path) -> list[tuple[str, int]]:
    """(name, lines) of every function and method, from ``def`` to its end, docstring
    not counted."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0]
            docstring = (
                first.end_lineno - first.lineno + 1  # type: ignore[operator]
                if isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
                else 0
            )
            out.append((node.name, node.end_lineno - node.lineno + 1 - docstring))  # type: ignore[operator]
    return out


def test_every_part_has_a_floor():
    parts = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in sources()}
    assert parts - {"__init__"} == set(FLOORS), "add the new part of vaelab to FLOORS"


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_run_downward_only(path):
    if path == PACKAGE / "__init__.py":
        return
    here = part_of(module_name(path)) if module_name(path) != "vaelab" else "__init__"
    wrong = sorted(
        name
        for name in vaelab_imports(path)
        if part_of(name) != here and FLOORS[part_of(name)] >= FLOORS[here]
    )
    assert not wrong, (
        f"{path.relative_to(REPO)} (floor {FLOORS[here]}) imports {wrong}, which are not below it: "
        "move the shared piece down (models/, config/, io/, stats/, measures/) instead"
    )


def test_no_two_modules_share_a_file_name():
    names = Counter(p.name for p in sources() if p.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{path.relative_to(REPO)}:{name} ({lines} lines)"
        for path in sources()
        for name, lines in function_lengths(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert long == [], f"split these into helpers (docstrings not counted): {long}"


def test_the_length_rule_counts_what_it_says(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    short = tmp_path / "short.py"
    short.write_text(f'def f():\n    """Doc\n    on two lines."""\n{body}\n')
    assert function_lengths(short) == [("f", 60)]
    short.write_text(f"def f():\n{body}\n    return 1\n")
    assert function_lengths(short) == [("f", 61)]


def test_pre_commit_runs_what_make_lint_runs():
    hooks = [
        hook
        for repo in yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())["repos"]
        for hook in repo["hooks"]
    ]
    entries = {hook["entry"].split(" --force-exclude")[0] for hook in hooks}
    makefile = (REPO / "Makefile").read_text()
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    commands = {
        line.strip().removeprefix("$(BIN)/").removesuffix(" .") for line in lint.splitlines()[1:]
    }
    assert entries == commands


def test_one_table_of_headline_metrics_serves_every_reader():
    from vaelab.compare import compare, report_detail
    from vaelab.evaluate import evaluate
    from vaelab.measures import headline
    from vaelab.prdiff import sharpness
    from vaelab.registry import runs

    assert headline.eval_headline() == evaluate.HEADLINE
    assert [key for key, _label, _fmt in report_detail.TABLE] == [
        m.detail for m in headline.compare_table()
    ]
    assert not hasattr(compare, "HEADLINE")
    assert tuple(m.detail for m in headline.described()) == runs.HEADLINE
    assert (
        headline.SHARPNESS.detail,
        headline.SHARPNESS.headline,
    ) == (sharpness.SHARPNESS_KEY, sharpness.HEADLINE_KEY)
    assert len({m.detail for m in headline.METRICS}) == len(headline.METRICS)
