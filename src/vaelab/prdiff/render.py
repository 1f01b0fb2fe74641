"""Render the collected differences as GitHub-flavoured Markdown (what a PR comment shows)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vaelab.prdiff.diff import DiffResult
from vaelab.prdiff.sharpness import RELATIVE_THRESHOLD, SHARPNESS_KEY, Measured, SharpnessChange

NONE = "—"


@dataclass(frozen=True)
class Figure:
    """One comparison figure; a link is None where that side has no such file."""

    name: str
    old_link: str | None
    new_link: str | None
    identical: bool


def _float(value: float, sign: str = "") -> str:
    """Five significant digits, like `dvc metrics diff`'s rounding, without float noise."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:{sign}.5g}"
    # Keep a float recognisable as one (1.0, not 1), as params.yaml and DVC write it.
    return text if any(mark in text for mark in ".en") else f"{text}.0"


def format_value(value: Any) -> str:
    """A value as the tables show it: floats to five significant digits, None as a dash."""
    if value is None:
        return NONE
    if isinstance(value, float):
        return _float(value)
    return str(value)


def format_delta(value: float | None) -> str:
    """A change with its sign; None as a dash."""
    if value is None:
        return NONE
    if isinstance(value, int):
        return f"{value:+d}"
    return _float(value, "+")


def format_percent(value: float | None) -> str:
    """A percentage with its sign and one decimal; None as a dash."""
    return NONE if value is None else f"{value:+.1f}%"


def _cell(text: str) -> str:
    # A bare pipe would end the table cell; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def changes_table(diff: DiffResult, what: str, rev_label: str) -> str:
    """A `dvc params diff`/`dvc metrics diff`-style table: every changed key with old, new,
    change, %."""
    if not diff.changes:
        body = f"No {what.lower()}s changed."
    else:
        header = (
            f"| Path | {what} | {_cell(rev_label)} | workspace | Change | % |\n"
            "|---|---|---:|---:|---:|---:|"
        )
        rows = [
            "| "
            + " | ".join(
                _cell(text)
                for text in (
                    change.path,
                    change.key,
                    format_value(change.old),
                    format_value(change.new),
                    format_delta(change.delta),
                    format_percent(change.percent),
                )
            )
            + " |"
            for change in diff.changes
        ]
        body = "\n".join([header, *rows])
    if diff.errors:
        problems = "\n".join(f"- {_cell(line)}" for line in diff.errors)
        body += f"\n\nDVC could not read:\n{problems}"
    return body


def _measured(value: Measured | None) -> str:
    """``0.0123 [0.011, 0.0135]``: the mean and, where recorded, its 95 % interval."""
    if value is None:
        return NONE
    if value.low is None or value.high is None:
        return format_value(value.mean)
    return f"{format_value(value.mean)} [{format_value(value.low)}, {format_value(value.high)}]"


def sharpness_line(change: SharpnessChange, rev_label: str) -> str:
    """One sentence per variant: the verdict, both values, the change and the rule that
    decided it."""
    name = f"**{change.variant}**"
    if change.status in ("sharper", "blurrier", "no significant change"):
        # A percentage of zero is undefined; the two values still say how much.
        percent = format_percent(change.percent) if change.percent is not None else "no % from 0"
        sign = "≤" if change.status == "no significant change" else ">"
        threshold = format_value(change.threshold)
        if change.rule == "interval":
            bound = f"{threshold} = √(hw_old² + hw_new²) of the 95 % intervals"
        else:
            bound = f"{threshold} = {RELATIVE_THRESHOLD:.0%} of |old|, as there is {change.note}"
        return (
            f"- {name}: {change.status}, {_measured(change.old)} → {_measured(change.new)} "
            f"(Δ {format_delta(change.delta)}, {percent}; |Δ| {sign} {bound})"
        )
    if change.status == "new":
        return f"- {name}: new, {_measured(change.new)} (not at {rev_label})"
    if change.status == "removed":
        return f"- {name}: removed (was {_measured(change.old)} at {rev_label})"
    return f"- {name}: cannot compare: {change.note}"


def figures_table(figures: list[Figure], rev_label: str) -> str:
    """A row per figure: the revision's and the workspace's side by side."""
    if not figures:
        return "No comparison figures on either side."
    header = f"| Figure | {_cell(rev_label)} | workspace |\n|---|---|---|"
    rows = []
    for figure in figures:
        title = f"`{figure.name}`" + (" (unchanged)" if figure.identical else "")
        old = (
            f"![{figure.name} at {rev_label}]({figure.old_link})"
            if figure.old_link
            else "*(absent)*"
        )
        new = (
            f"![{figure.name} in the workspace]({figure.new_link})"
            if figure.new_link
            else "*(absent)*"
        )
        rows.append(f"| {_cell(title)} | {_cell(old)} | {_cell(new)} |")
    return "\n".join([header, *rows])


def render_report(
    *,
    rev_label: str,
    sha: str,
    params: DiffResult,
    metrics: DiffResult,
    sharpness: list[SharpnessChange],
    figures: list[Figure],
    source: str = "",
) -> str:
    """The whole report: sharpness verdicts first (the question the project asks), then the tables.

    ``source``, when given, is a sentence under the title saying where the old side was read from.
    """
    lines = [
        f"# vaelab report: workspace vs `{rev_label}` (`{sha[:8]}`)",
        "",
        *([source, ""] if source else []),
        "## Sharpness of reconstructions",
        "",
        f"`{SHARPNESS_KEY}` (variance of the Laplacian of the test reconstructions; higher is "
        f"sharper), `{rev_label}` → workspace, with its 95 % bootstrap interval over seeds × "
        "test images where recorded. "
        "A variant is sharper or blurrier only when the change is larger than the noise: "
        "|Δ| > √(hw_old² + hw_new²), hw being the half-widths of the two sides' intervals "
        "(about 1.96 standard errors each); where a side has no interval over two or more seeds, "
        f"when |Δ| > {RELATIVE_THRESHOLD:.0%} of |old|. Otherwise: no significant change.",
        "",
        *(
            [sharpness_line(change, rev_label) for change in sharpness]
            or ["No evaluated variant on either side."]
        ),
        "",
        "## Params",
        "",
        changes_table(params, "Param", rev_label),
        "",
        "## Metrics",
        "",
        changes_table(metrics, "Metric", rev_label),
        "",
        "## Figures",
        "",
        figures_table(figures, rev_label),
        "",
    ]
    return "\n".join(lines)
