"""Collect what changed between a git revision and the workspace of a DVC repository.

Everything here reads; nothing writes. DVC is imported inside the functions so that
importing the CLI stays fast.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.errors import UserError
from vaelab.io.json_files import is_number

if TYPE_CHECKING:
    from dvc.repo import Repo

# Where the pipeline keeps the comparison figures the report shows (an output of `compare`).
FIGURES_DIR = "reports/compare"


@dataclass(frozen=True)
class Change:
    """One key whose value differs between the revision (old) and the workspace (new)."""

    path: str
    key: str
    old: Any
    new: Any

    @property
    def delta(self) -> float | None:
        """New minus old when both are numbers, else None."""
        if is_number(self.old) and is_number(self.new):
            delta: float = self.new - self.old
            return delta
        return None

    @property
    def percent(self) -> float | None:
        """Relative change in percent of |old|; None when old is 0 or either side is not a
        number."""
        delta = self.delta
        if delta is None or self.old == 0:
            return None
        percent: float = 100.0 * delta / abs(self.old)
        return percent


@dataclass(frozen=True)
class DiffResult:
    """The changed keys of one kind (params or metrics) and the files DVC could not read."""

    changes: list[Change]
    errors: list[str]


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git -C root args...``, its output captured; the caller judges the exit status."""
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )


def resolve_rev(root: Path, rev: str) -> str:
    """The full commit SHA that ``rev`` names in the git repository at ``root``.

    Raises UserError when it names no commit, so that nothing is written for a typo.
    """
    if not rev or rev.startswith("-"):
        # A leading dash would be read by git as an option.
        raise UserError(
            f"--rev {rev!r}: not a git revision; "
            "give a branch, tag or commit such as main or HEAD~1"
        )
    found = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise UserError(
            f"--rev {rev}: no such commit in the git repository at {root}; "
            "check the name (git branch -a), or fetch it first (git fetch origin)"
        )
    return found.stdout.strip()


def _errors(raw: Mapping[str, Any], rev_label: str, sha: str) -> list[str]:
    """DVC's per-revision errors as readable lines (DVC collects them instead of raising)."""
    lines: list[str] = []
    for rev, problem in raw.items():
        side = rev_label if rev == sha else rev
        if isinstance(problem, Mapping):
            lines.extend(
                f"{path} at {side}: {type(exc).__name__}: {exc}"
                for path, exc in sorted(problem.items())
            )
        else:
            lines.append(f"{side}: {type(problem).__name__}: {problem}")
    return lines


def _changes(raw: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Change]:
    return [
        Change(path=path, key=key, old=values.get("old"), new=values.get("new"))
        for path, keys in sorted(raw.items())
        for key, values in sorted(keys.items())
    ]


def dvc_diffs(repo: Repo, sha: str, rev_label: str) -> tuple[DiffResult, DiffResult]:
    """(params, metrics) changed between commit ``sha`` and the workspace, as DVC sees them."""
    params = repo.params.diff(a_rev=sha, b_rev="workspace")
    metrics = repo.metrics.diff(a_rev=sha, b_rev="workspace")
    return (
        DiffResult(
            _changes(params.get("diff", {})), _errors(params.get("errors", {}), rev_label, sha)
        ),
        DiffResult(
            _changes(metrics.get("diff", {})), _errors(metrics.get("errors", {}), rev_label, sha)
        ),
    )


class Side:
    """Read files of one side: the workspace (``sha`` None) or a git commit through DVC's
    filesystem.

    DVC's filesystem reads git-tracked files and DVC-tracked outputs alike, so a figure
    folder that moves into the DVC cache later still works. Use it as a context manager:
    a commit's filesystem holds a DVC repo open.
    """

    def __init__(self, root: Path, sha: str | None) -> None:
        self.root = root
        self.sha = sha
        self._fs = None
        if sha is not None:
            from dvc.api import DVCFileSystem

            self._fs = DVCFileSystem(url=str(root), rev=sha)

    def __enter__(self) -> Side:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fs is not None:
            self._fs.close()

    def glob(self, pattern: str) -> list[str]:
        """Repo-relative POSIX paths of the files matching ``pattern``, sorted."""
        if self._fs is None:
            return sorted(
                p.relative_to(self.root).as_posix() for p in self.root.glob(pattern) if p.is_file()
            )
        return sorted(str(p).lstrip("/") for p in self._fs.glob(pattern) if self._fs.isfile(p))

    def read_bytes(self, path: str) -> bytes:
        """The bytes of the repo-relative file ``path`` on this side."""
        if self._fs is None:
            return (self.root / path).read_bytes()
        data: bytes = self._fs.cat_file(path)
        return data


def read_figures(side: Side) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` of the comparison figures on one side."""
    return {Path(path).name: side.read_bytes(path) for path in side.glob(f"{FIGURES_DIR}/*.png")}
