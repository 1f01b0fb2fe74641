"""Build the report: read both sides, then write the figures folder and the Markdown file
atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from vaelab.errors import UserError
from vaelab.io.atomic import atomic_directory, atomic_file
from vaelab.prdiff.diff import (
    FIGURES_DIR,
    DiffResult,
    Side,
    dvc_diffs,
    read_figures,
    resolve_rev,
)
from vaelab.prdiff.render import Figure, render_report
from vaelab.prdiff.sharpness import (
    EvalRecord,
    SharpnessChange,
    read_eval_records,
    sharpness_changes,
)
from vaelab.prdiff.worktree import check_base_dir, workspace_diffs

if TYPE_CHECKING:
    from dvc.repo import Repo

WORKSPACE = "workspace"
MARKER = ".vaelab-report"


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote."""

    path: Path
    assets: Path
    markdown: str
    sharpness: list[SharpnessChange]
    figures: list[Figure]


def rev_slug(rev: str, sha: str) -> str:
    """A folder name for ``rev``'s figures: ``origin/main`` → ``origin-main``,
    ``HEAD~1`` → ``HEAD-1``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", rev).strip("-.")
    # The workspace's figures live in a folder of that name; a branch called so must not collide.
    return slug if slug and slug != WORKSPACE else f"rev-{sha[:8]}"


def _check_assets_folder(assets: Path, figures_dir: Path) -> None:
    """Refuse to replace a folder this command did not write (e.g. ``--out reports.md`` →
    ``reports/``).

    The folder is replaced whole, so that figures of an earlier run do not linger; the marker
    file is what tells our folder from a user's.
    """
    figures_dir = figures_dir.resolve()
    resolved = assets.resolve()
    if resolved == figures_dir or resolved in figures_dir.parents:
        raise UserError(
            f"{assets}: would be replaced by the report's figures, and it holds {FIGURES_DIR}, "
            "which the report reads; choose another --out (e.g. reports/pr.md)"
        )
    if assets.exists() and not (assets / MARKER).is_file():
        raise UserError(
            f"{assets}: would be replaced by the report's figures, but vaelab report did not "
            f"write it (no {MARKER} file); choose another --out (its figures go to a folder of "
            "the same name without .md)"
        )


def _open_repo(root: Path, what: str) -> Repo:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(str(root))
    except NotDvcRepoError:
        raise UserError(f"{root}: not inside a DVC repository; {what}") from None


def build_report(
    rev: str,
    out: Path | str = Path("reports/pr.md"),
    root: Path | str | None = None,
    base_dir: Path | str | None = None,
) -> Report:
    """Compare the workspace of the DVC repo at ``root`` (default: the current folder) with ``rev``.

    The old side is ``rev``'s committed files (read through DVC's filesystem), or, with
    ``base_dir``, the workspace of that folder: a checkout of ``rev`` (checked) in which
    the pipeline was reproduced, e.g. a ``git worktree`` on the same machine.

    Writes ``out`` and, beside it, a folder named like ``out`` without ``.md`` holding
    ``workspace/<figure>.png`` and ``<rev-slug>/<figure>.png`` for every
    ``reports/compare/*.png`` present on either side (``out`` and ``base_dir`` are relative
    to the current folder, the compared files to the repos' roots). Everything is read
    before anything is written, so a bad ``rev`` or an unreadable file leaves no output.
    """
    out = Path(out)
    if out.suffix.lower() != ".md":
        raise UserError(
            f"--out {out}: the report is Markdown; give a path ending in .md, e.g. reports/pr.md"
        )
    root = Path.cwd() if root is None else Path(root)
    diffs = read_diffs(root, rev, base_dir)
    # A base checkout is read like the workspace: its files as the reproduction left them.
    old_side = (
        Side(diffs.base_root, None)
        if diffs.base_root is not None
        else Side(diffs.repo_root, diffs.sha)
    )
    old_records, old_figures = _read_side(old_side, rev)
    new_records, new_figures = _read_side(Side(diffs.repo_root, None), "the workspace")
    sharpness = sharpness_changes(old_records, new_records, rev)

    if not out.is_absolute():
        out = Path.cwd() / out
    assets = out.with_suffix("")
    slug = rev_slug(rev, diffs.sha)
    figures = _figures(assets.name, slug, old_figures, new_figures)
    markdown = render_report(
        rev_label=rev,
        sha=diffs.sha,
        params=diffs.params,
        metrics=diffs.metrics,
        sharpness=sharpness,
        figures=figures,
        source=diffs.source,
    )

    _check_assets_folder(assets, diffs.repo_root / FIGURES_DIR)
    _write_assets(assets, ((slug, old_figures), (WORKSPACE, new_figures)))
    with atomic_file(out) as handle:
        handle.write(markdown)
    return Report(path=out, assets=assets, markdown=markdown, sharpness=sharpness, figures=figures)


@dataclass(frozen=True)
class Diffs:
    """What changed in params and metrics, and where the old side is read from."""

    repo_root: Path
    sha: str  # the commit that the revision names
    base_root: Path | None  # the base checkout's root; None: read the commit
    source: str  # the report's sentence on a base checkout, else ""
    params: DiffResult
    metrics: DiffResult


def read_diffs(root: Path, rev: str, base_dir: Path | str | None) -> Diffs:
    """Params and metrics changed between ``rev`` (or the base checkout ``base_dir`` of it)
    and the workspace of the DVC repo at ``root``."""
    with _open_repo(root, "run vaelab report in the project (where dvc.yaml is)") as repo:
        repo_root = Path(repo.root_dir)
        sha = resolve_rev(repo_root, rev)
        if base_dir is None:
            params, metrics = dvc_diffs(repo, sha, rev)
            return Diffs(repo_root, sha, None, "", params, metrics)
        base_root = check_base_dir(Path(base_dir), sha, rev)
        source = (
            f"`{rev}` (`{sha[:8]}`) is read from the workspace of `{base_dir}`, a checkout "
            "of it in which the pipeline was reproduced, not from its commit."
        )
        with _open_repo(
            base_root, f"--base-dir must be a checkout of this project at {rev}"
        ) as base_repo:
            params, metrics = workspace_diffs(base_repo, repo, rev)
        return Diffs(repo_root, sha, base_root, source, params, metrics)


def _read_side(side: Side, label: str) -> tuple[dict[str, EvalRecord], dict[str, bytes]]:
    """The evaluation records and comparison figures of one side, then the side closed."""
    with side:
        return read_eval_records(side, label), read_figures(side)


def _figures(
    folder: str, slug: str, old_figures: dict[str, bytes], new_figures: dict[str, bytes]
) -> list[Figure]:
    """Every figure on either side, linked to its copies under ``folder``, by name."""
    # Links are relative to the report's folder: GitHub, CML's image upload and editors
    # resolve them so.
    return [
        Figure(
            name=name,
            old_link=f"{quote(folder)}/{quote(slug)}/{quote(name)}"
            if name in old_figures
            else None,
            new_link=f"{quote(folder)}/{WORKSPACE}/{quote(name)}" if name in new_figures else None,
            identical=old_figures.get(name) == new_figures.get(name),
        )
        for name in sorted(set(old_figures) | set(new_figures))
    ]


def _write_assets(assets: Path, sides: tuple[tuple[str, dict[str, bytes]], ...]) -> None:
    """Replace ``assets`` whole: the marker file and a subfolder of figures per side."""
    with atomic_directory(assets) as staging:
        # mkdtemp makes the staging folder private (0700); the figures are for everyone to read.
        staging.chmod(0o755)
        (staging / MARKER).write_text(
            "Figures of the report beside this folder, written by vaelab report.\n"
        )
        for folder, images in sides:
            (staging / folder).mkdir()
            for name, data in images.items():
                (staging / folder / name).write_bytes(data)
