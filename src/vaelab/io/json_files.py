"""The one JSON reader and writer, and the one way a nested record becomes dotted keys."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vaelab.errors import UserError
from vaelab.io.atomic import atomic_file


def write_json(dest: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON with a final newline, atomically."""
    with atomic_file(dest) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_json(path: Path, how_to_fix: str) -> Any:
    """The JSON in ``path``, or one UserError naming the file and ``how_to_fix`` (e.g. "run
    `dvc repro evaluate@vae` first") when it is missing or not valid JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {how_to_fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); {how_to_fix}") from None


def flatten(
    tree: Mapping[str, Any], prefix: str = "", *, keep_empty: bool = True
) -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": 1e-3}``. An empty mapping stays a value of
    its own (``{"a": {}}`` → ``{"a": {}}``) unless ``keep_empty`` is false, when it adds no key."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and (value or not keep_empty):
            flat |= flatten(value, f"{dotted}.", keep_empty=keep_empty)
        else:
            flat[dotted] = value
    return flat


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: a value a metric diff can subtract."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
