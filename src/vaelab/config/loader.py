"""Load params.yaml into :class:`Params`, turning every problem into one clear UserError."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from vaelab.config.params import Params
from vaelab.errors import UserError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``path``; raise :class:`UserError` naming every bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{path}: file not found; run from the repository root or pass --params PATH"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(
            f"{path}: not valid YAML: {_yaml_problem(err)}; fix the syntax there"
        ) from None
    return params_from_dict(raw if raw is not None else {}, source=str(path))


def params_from_dict(raw: Any, source: str = "params") -> Params:
    """Validate ``raw`` (params.yaml's contents) as Params; a UserError lists what is wrong,
    naming ``source``."""
    if not isinstance(raw, dict):
        raise UserError(
            f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(error) for error in err.errors()]
        if len(problems) == 1:
            raise UserError(f"{source}: {problems[0]}") from None
        listing = "\n".join(f"  - {p}" for p in problems)
        raise UserError(f"{source}: {len(problems)} problems:\n{listing}") from None


def _describe(error: Any) -> str:
    loc = tuple(str(part) for part in error["loc"])
    shown, allowed = _walk(loc)
    key = ".".join(shown) or "(top level)"
    if error["type"] == "extra_forbidden":
        hint = ""
        close = difflib.get_close_matches(shown[-1], allowed, n=1, cutoff=0.5)
        if close:
            hint = f" Did you mean '{'.'.join((*shown[:-1], close[0]))}'?"
        return f"{key}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}."
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        # Raised by a cross-field check; the message already names the keys (a check of the
        # whole file has no key of its own to put first).
        return f"{key}: {message}" if shown else message
    return f"{key}: {value!r} is not allowed: {message}."


def _walk(loc: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Follow ``loc`` through the params models: the key path as the user wrote it (without
    pydantic's union tags) and the keys allowed beside the last part."""
    annotation: Any = Params
    shown: list[str] = []
    parts = list(loc)
    while parts:
        annotation = _unwrap(annotation)
        part = parts.pop(0)
        if get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
            shown.append(part)
        elif get_origin(annotation) in (Union, UnionType):
            # A discriminated union: pydantic puts the chosen tag (the arch) in the loc.
            members = {_tag(member): member for member in get_args(annotation)}
            annotation = members.get(part)
            if annotation is None:
                shown.append(part)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            shown.append(part)
            if not parts:
                return shown, list(annotation.model_fields)
            field = annotation.model_fields.get(part)
            annotation = field.annotation if field else None
        else:
            shown.append(part)
    return shown, []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _tag(member: Any) -> str | None:
    field = getattr(member, "model_fields", {}).get("arch")
    return field.default if field is not None else None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: where (1-based line and column) and what."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(err, "context", None)
    return " ".join(f"{where}{problem}{f' ({context})' if context else ''}".split())
