"""The params reference: every key of params.yaml, read from the pydantic config and dvc.yaml.

:func:`params_rows` walks :class:`~vaelab.config.params.Params` field by field (the type, the
default, the allowed values and the ``Field(description=...)`` of each) and :func:`render`
writes them as the Markdown page the docs site shows (``docs/reference/params.md``, made at
build time by ``scripts/docs_hooks.py``), with the DVC stages a change of the key reruns,
read from the ``params`` lists of ``dvc.yaml``. Nothing in it is written by hand, so it cannot
drift from the code.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from vaelab.config.model_config import AnyModelConfig
from vaelab.config.params import Params

VARIANT = "<variant>"
# Constraint attributes of annotated_types / pydantic metadata, as the reference writes them.
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


@dataclass(frozen=True)
class Row:
    """One key of params.yaml as the reference shows it."""

    key: str  # dotted, e.g. ``data.crop.size``; ``models.<variant>.z_dim`` for model knobs
    type: str
    default: str
    allowed: str
    description: str
    section: bool  # a mapping whose keys have rows of their own


def _members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None``), else ``(annotation,)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The params section class ``annotation`` holds (``ChainConfig | None`` too), if any."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def type_text(annotation: Any) -> str:
    """A reader's name for ``annotation``: ``int | null``, ``list[float]``, ``mapping``."""
    origin = get_origin(annotation)
    if annotation is type(None):
        return "null"
    if origin is Annotated:
        return type_text(get_args(annotation)[0])
    if origin is Literal:
        return " | ".join(sorted({type(v).__name__ for v in get_args(annotation)}))
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(member) for member in get_args(annotation))
    if origin in (list, tuple):
        return f"list[{type_text(get_args(annotation)[0])}]"
    if origin is dict:
        key, value = get_args(annotation)
        return f"mapping[{type_text(key)}, {type_text(value)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> list[str]:
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(ge=1)] inside a union
            found += _bounds(item.metadata)
            continue
        for attr, sign in _BOUNDS:
            if getattr(item, attr, None) is not None:
                found.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "min_length", None) is not None:
            found.append(f"at least {item.min_length} item(s)")
        if getattr(item, "pattern", None) is not None:
            found.append(f"matches `{item.pattern}`")
    return found


def allowed_text(field: FieldInfo) -> str:
    """The values ``field`` accepts beyond its type: Literal choices and numeric bounds."""
    parts: list[str] = []
    for member in _members(field.annotation):
        if get_origin(member) is Literal:
            parts.append(", ".join(f"`{json.dumps(value)}`" for value in get_args(member)))
        elif get_origin(member) in (list, tuple):
            inner = get_args(member)[0]
            if get_origin(inner) is Literal:
                parts.append("items: " + ", ".join(f"`{v}`" for v in get_args(inner)))
            elif get_origin(inner) is Annotated:
                parts += [f"items {b}" for b in _bounds(list(get_args(inner)[1:]))]
        elif get_origin(member) is Annotated:
            parts += _bounds(list(get_args(member)[1:]))
    return "; ".join(parts + _bounds(field.metadata))


def default_text(field: FieldInfo) -> str:
    """``field``'s default as YAML would read it (``required`` when it has none)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def _row(key: str, field: FieldInfo) -> Row:
    return Row(
        key=key,
        type=type_text(field.annotation),
        default=default_text(field),
        allowed=allowed_text(field),
        description=field.description or "",
        section=_section_of(field.annotation) is not None,
    )


def section_rows(model: type[BaseModel], prefix: str) -> Iterator[Row]:
    """A row for every field of ``model`` under ``prefix``, depth first."""
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        yield _row(key, field)
        inner = _section_of(field.annotation)
        if inner is not None:
            yield from section_rows(inner, key)


def model_classes() -> list[type[BaseModel]]:
    """The config class of every ``arch`` a ``models:`` entry can name."""
    return list(get_args(AnyModelConfig))


def params_rows() -> Iterator[Row]:
    """Every key of params.yaml but the model knobs (see :func:`model_rows`)."""
    yield from section_rows(Params, "")


def model_rows(config: type[BaseModel]) -> Iterator[Row]:
    """The knobs of one ``arch``, as keys ``models.<variant>.<knob>``."""
    yield from section_rows(config, f"models.{VARIANT}")


def stage_params(dvc_yaml: Path) -> dict[str, list[str]]:
    """Stage name → the params keys it lists in ``dvc_yaml`` (``train@<variant>`` for a
    foreach stage, ``${key}`` read as ``<variant>``)."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    found: dict[str, list[str]] = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        keys: list[str] = []
        for entry in body.get("params", []):
            names = [entry] if isinstance(entry, str) else [k for ks in entry.values() for k in ks]
            keys += [key.replace("${key}", VARIANT) for key in names]
        found[f"{name}@{VARIANT}" if "foreach" in stage else name] = keys
    return found


def stages_rerun(key: str, stages: Mapping[str, list[str]]) -> list[str]:
    """The stages a change of ``key`` reruns: those listing it, a section above it or a key
    inside it."""
    return [
        name
        for name, keys in stages.items()
        if any(k == key or key.startswith(k + ".") or k.startswith(key + ".") for k in keys)
    ]


def _table(rows: list[Row], stages: Mapping[str, list[str]]) -> list[str]:
    lines = [
        "| key | type | default | allowed | reruns | what it changes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        rerun = ", ".join(f"`{s}`" for s in stages_rerun(row.key, stages)) or "none"
        cells = [
            f"`{row.key}`",
            row.type,
            f"`{row.default}`" if row.default != "(section)" else "(section)",
            row.allowed,
            rerun,
            row.description,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def render(dvc_yaml: Path) -> str:
    """The params reference page: one table for the sections, one per ``arch``."""
    stages = stage_params(dvc_yaml)
    lines = [
        "# params.yaml reference",
        "",
        "Every key of `params.yaml`, generated from the pydantic config in "
        "`src/vaelab/config/` and the `params` lists of `dvc.yaml` when the site is built.",
        "",
        "`vaelab params` prints your params.yaml with every default filled in; "
        "`vaelab params --schema` prints this as a JSON Schema. *reruns* names the DVC stages "
        "whose `params` list the key (or a section around it): a key no stage lists reruns "
        "nothing.",
        "",
        "## Sections",
        "",
        *_table([r for r in params_rows() if r.key != "models"], stages),
        "",
        "## models",
        "",
        "`models` maps each variant's name to an entry; its `arch` picks the knobs below. "
        "A change inside one entry reruns that variant's stages.",
    ]
    for config in model_classes():
        arch = config.model_fields["arch"].default
        summary = " ".join((config.__doc__ or "").split("\n\n")[0].split())
        lines += ["", f"### arch: {arch}", "", summary]
        lines += ["", *_table(list(model_rows(config)), stages)]
    return "\n".join(lines) + "\n"


def schema() -> dict[str, Any]:
    """params.yaml's JSON Schema, descriptions included."""
    return Params.model_json_schema()
