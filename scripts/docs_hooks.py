"""MkDocs hooks (mkdocs.yml ``hooks:``): the pages made from the code at build time, so that they
cannot drift from it: the params reference (the pydantic config and dvc.yaml), the command line
(the argparse parser) and one API page per part of the package (its docstrings, through
mkdocstrings)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from vaelab.cli import build_parser
from vaelab.config.reference import render

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vaelab"
PARAMS_PAGE = "reference/params.md"
CLI_PAGE = "reference/cli.md"
API_DIR = "reference/api"


def api_parts() -> list[str]:
    """The parts of vaelab, as test_layout names them: its subpackages and top modules."""
    parts = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    parts += [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    return sorted(parts)


def _summary(part: str) -> str:
    """The first line of the part's module docstring."""
    path = PACKAGE / part / "__init__.py" if (PACKAGE / part).is_dir() else PACKAGE / f"{part}.py"
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def api_index() -> str:
    """The API reference's first page: one line per part, linking its page."""
    lines = [
        "# API reference",
        "",
        "The docstrings of every part of `src/vaelab`, one page each, generated when the site "
        "is built.",
        "",
        "| part | what it is |",
        "|---|---|",
    ]
    lines += [f"| [`vaelab.{p}`]({p}.md) | {_summary(p)} |" for p in api_parts()]
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    """Every ``vaelab`` subcommand's ``--help``, as argparse prints it."""
    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "The `vaelab` command's subcommands and options, generated from its argparse parser "
        "when the site is built.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():  # type: ignore[union-attr]
        lines += ["", f"## vaelab {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _api_nav(entries: list[Any]) -> None:
    """Replace the nav's ``API: reference/api/index.md`` with the index and one entry per part."""
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for title, value in entry.items():
            if value == f"{API_DIR}/index.md":
                parts = [{f"vaelab.{p}": f"{API_DIR}/{p}.md"} for p in api_parts()]
                entry[title] = [{"Overview": value}, *parts]
            elif isinstance(value, list):
                _api_nav(value)


def on_config(config: Any) -> Any:
    """List the generated API pages in the nav, under the entry that names their index."""
    _api_nav(config["nav"] or [])
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the params reference and the API pages."""
    files.append(File.generated(config, PARAMS_PAGE, content=render(ROOT / "dvc.yaml")))
    files.append(File.generated(config, CLI_PAGE, content=cli_page()))
    files.append(File.generated(config, f"{API_DIR}/index.md", content=api_index()))
    for part in api_parts():
        page = f"# vaelab.{part}\n\n::: vaelab.{part}\n"
        files.append(File.generated(config, f"{API_DIR}/{part}.md", content=page))
    return files
