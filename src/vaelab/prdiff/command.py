"""The `vaelab report` subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> None:
    from vaelab.prdiff.build import build_report
    from vaelab.prdiff.render import sharpness_line

    report = build_report(args.rev, args.out, base_dir=args.base_dir)
    for change in report.sharpness:
        print(sharpness_line(change, args.rev).removeprefix("- ").replace("**", ""))
    print(
        f"wrote {args.out} ({len(report.figures)} comparison figure(s), "
        f"copied under {args.out.with_suffix('')})"
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` on the ``vaelab`` command's subparsers."""
    report = subparsers.add_parser(
        "report",
        help=(
            "write a Markdown report comparing the workspace with a git revision "
            "(params, metrics, figures, blur)"
        ),
        description=(
            "Compare the workspace of this DVC repo with REV: dvc params diff and dvc metrics diff "
            "as tables, reports/compare/*.png of both sides, and whether each variant's "
            "reconstructions got sharper or blurrier (blur.laplacian_var.recon) by more than the "
            "measured noise. Run it at the project root."
        ),
    )
    report.add_argument(
        "--rev",
        default="HEAD",
        help="git revision to compare with, e.g. main or origin/main (default: HEAD)",
    )
    report.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        help=(
            "read REV's side from this checkout of REV (e.g. a git worktree where dvc repro ran on "
            "this machine) instead of REV's committed files; it must be at REV's commit"
        ),
    )
    report.add_argument(
        "--out",
        type=Path,
        default=Path("reports/pr.md"),
        help=(
            "Markdown file to write; figures go to the folder of the same name without .md "
            "(default: reports/pr.md)"
        ),
    )
    report.set_defaults(func=_report)
