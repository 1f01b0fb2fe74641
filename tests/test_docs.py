"""The documentation a researcher reads: a one-page README, docs pages that open with their
purpose and keep paragraphs short, and a params reference that covers every key and cannot
drift from the pydantic config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from vaelab.cli import main
from vaelab.config import load_params
from vaelab.config.reference import (
    VARIANT,
    model_classes,
    model_rows,
    params_rows,
    render,
    section_rows,
    stage_params,
    stages_rerun,
)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 200
MAX_PARAGRAPH_WORDS = 120
FENCE = re.compile(r"^\s*(```|~~~)")
ITEM = re.compile(r"^\s*([-*+]|\d+\.)\s")


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a Markdown text: blocks between blank lines, each list item and
    each table row on its own; fenced code and headings left out."""
    found: list[list[str]] = []
    current: list[str] = []
    in_code = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        starts_new = not line.strip() or line.lstrip().startswith(("#", "|")) or ITEM.match(line)
        if starts_new and current:
            found.append(current)
            current = []
        if line.lstrip().startswith("|"):
            found.append([line])
        elif line.strip() and not line.lstrip().startswith("#"):
            current.append(line)
    if current:
        found.append(current)
    return [" ".join(p) for p in found]


def test_paragraphs_splits_items_rows_and_skips_code():
    text = "# T\n\nOne two.\nthree\n\n- a b\n- c\n\n| x | y |\n\n```bash\nlots of words\n```\n"
    assert paragraphs(text) == ["One two. three", "- a b", "- c", "| x | y |"]


def test_readme_fits_one_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("path", [README, *doc_pages()], ids=lambda p: str(p.relative_to(REPO)))
def test_no_paragraph_is_long(path: Path):
    long = [
        f"{len(p.split())} words: {p[:80]}..."
        for p in paragraphs(path.read_text(encoding="utf-8"))
        if len(p.split()) > MAX_PARAGRAPH_WORDS
    ]
    assert not long, f"{path.name}: split these paragraphs:\n" + "\n".join(long)


@pytest.mark.parametrize("path", doc_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_page_opens_with_its_purpose(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), f"{path.name}: start with a '# ' title"
    first = paragraphs(text)[0]
    sentences = re.findall(r"[.!?](?:\s|$)", first)
    assert first.endswith(".") and len(sentences) == 1, (
        f"{path.name}: open with one sentence saying what the page is for, got: {first!r}"
    )


def test_docs_nav_names_every_page():
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    named = set(re.findall(r"[\w/]+\.md", json.dumps(nav)))
    pages = {str(p.relative_to(DOCS)) for p in doc_pages()}
    assert pages <= named, f"add to mkdocs.yml's nav: {sorted(pages - named)}"


def all_rows():
    yield from params_rows()
    for config in model_classes():
        yield from model_rows(config)


def test_every_params_field_has_a_description():
    missing = [row.key for row in all_rows() if not row.description.strip()]
    assert not missing, "give these fields Field(..., description=...): " + ", ".join(missing)


def test_a_field_without_description_is_found():
    from pydantic import Field

    from vaelab.config.section import Section

    class Bare(Section):
        described: int = Field(1, description="has one")
        bare: int = 2

    rows = {row.key: row.description for row in section_rows(Bare, "x")}
    assert rows == {"x.described": "has one", "x.bare": ""}


def leaf_keys(value: object, prefix: str) -> set[str]:
    if isinstance(value, dict) and value:
        keys = {prefix} if prefix else set()
        for key, inner in value.items():
            keys |= leaf_keys(inner, f"{prefix}.{key}" if prefix else str(key))
        return keys
    return {prefix}


def test_the_reference_covers_every_key_of_params_yaml():
    dumped = load_params(REPO / "params.yaml").model_dump(mode="json")
    models = dumped.pop("models")
    keys = leaf_keys(dumped, "")
    for entry in models.values():
        keys |= {f"models.{VARIANT}.{knob}" for knob in entry}
    documented = {row.key for row in all_rows()}
    # Free-form mappings (arithmetic groups, expressions) are documented as one key.
    free = ("evaluate.arithmetic.groups.", "evaluate.arithmetic.expressions.")
    missing = {k for k in keys - documented if not k.startswith(free)}
    assert not missing, f"keys without a reference row: {sorted(missing)}"
    page = render(REPO / "dvc.yaml")
    assert all(f"`{key}`" in page for key in documented)


def test_allowed_values_read_literals_and_bounds():
    rows = {row.key: row for row in params_rows()}
    assert rows["train.processes"].allowed == '≥ 1; ≤ 1024; `"auto"`'
    assert rows["data.channels"].allowed == "`1`, `3`"
    assert rows["data.image_size"].allowed == "≥ 4; ≤ 1024"
    assert rows["data.image_size"].default == "32"


def test_reruns_come_from_dvc_yaml():
    stages = stage_params(REPO / "dvc.yaml")
    assert stages_rerun("data.workers", stages) == []
    assert stages_rerun("evaluate.chain.passes", stages) == ["chain"]
    assert stages_rerun(f"models.{VARIANT}.z_dim", stages) == [
        f"train@{VARIANT}",
        "compare",
        "register",
    ]
    assert "prepare" in stages_rerun("data.crop.box.top", stages)


def test_params_schema_prints_json_schema(capsys):
    main(["params", "--schema"])
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {"seed", "data", "train", "models", "evaluate", "registry"}
    seeds = schema["$defs"]["TrainConfig"]["properties"]["seeds"]
    assert seeds["minimum"] == 1 and "Replicate trainings" in seeds["description"]
