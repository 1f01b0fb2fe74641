"""The old side of a report as a second checkout (``--base-dir``) rather than a git revision.

In a pull request both sides are reproduced on the same machine: a ``git worktree`` of
the base revision next to the head's checkout, ``dvc repro`` in each. The report then
compares the two workspaces, not the base's committed numbers, which were made on
another machine. Params and metrics come from ``Repo(dir).params.show()`` and
``metrics.show()`` of each workspace, flattened and compared the way ``dvc params diff``
and ``dvc metrics diff`` do (dotted keys, lists compared as text, unchanged keys left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.errors import UserError
from vaelab.io.json_files import flatten
from vaelab.prdiff.diff import Change, DiffResult, git

if TYPE_CHECKING:
    from dvc.repo import Repo


def check_base_dir(base: Path, sha: str, rev: str) -> Path:
    """``base``'s root when it is a git checkout of commit ``sha`` (what ``rev`` names); else a
    UserError."""
    if not base.is_dir():
        raise UserError(
            f"--base-dir {base}: no such folder; "
            f"create it with git worktree add --detach {base} {rev}"
        )
    found = git(base, "rev-parse", "HEAD", "--show-toplevel")
    if found.returncode != 0:
        raise UserError(
            f"--base-dir {base}: not a git checkout ({found.stderr.strip()}); "
            f"create one with git worktree add --detach {base} {rev}"
        )
    head, toplevel = found.stdout.splitlines()
    if head != sha:
        raise UserError(
            f"--base-dir {base}: a checkout of {head[:8]}, not of --rev {rev} ({sha[:8]}); "
            f"check out that revision there (git -C {base} checkout --detach {sha}) "
            "and reproduce it"
        )
    return Path(toplevel)


def _flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become their text, as DVC compares them."""
    return {k: str(v) if isinstance(v, list) else v for k, v in flatten(tree).items()}


def _workspace(repo: Repo, kind: str, label: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({file: {dotted key: value}}, errors)`` of the params or metrics of ``repo``'s
    workspace."""
    # Without revisions DVC reads the workspace only, under the key "".
    (shown,) = getattr(repo, kind).show(hide_workspace=False).values()
    if "error" in shown:
        problem = shown["error"]
        return {}, [f"{label}: {type(problem).__name__}: {problem}"]
    files: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for path, result in sorted(shown.get("data", {}).items()):
        if "error" in result:
            errors.append(f"{path} at {label}: {type(result['error']).__name__}: {result['error']}")
            continue
        data = result.get("data", {})
        files[Path(path).as_posix()] = _flatten(data) if isinstance(data, Mapping) else {"": data}
    return files, errors


def _changes(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[Change]:
    changes: list[Change] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, {}), new.get(path, {})
        changes.extend(
            Change(path=path, key=key, old=before.get(key), new=after.get(key))
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        )
    return changes


def workspace_diffs(
    old_repo: Repo, new_repo: Repo, old_label: str
) -> tuple[DiffResult, DiffResult]:
    """(params, metrics) changed between the workspaces of ``old_repo`` and ``new_repo``."""
    diffs = []
    for kind in ("params", "metrics"):
        old, old_errors = _workspace(old_repo, kind, old_label)
        new, new_errors = _workspace(new_repo, kind, "workspace")
        diffs.append(DiffResult(_changes(old, new), old_errors + new_errors))
    return diffs[0], diffs[1]
