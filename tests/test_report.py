"""`vaelab report` against a throwaway git + DVC repo whose two commits differ in params,
metrics and figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vaelab.cli import main
from vaelab.prdiff import build_report
from vaelab.prdiff.render import sharpness_line
from vaelab.prdiff.sharpness import (
    EvalRecord,
    Measured,
    SharpnessChange,
    measured,
    read_eval_records,
    sharpness_changes,
)

DVC_YAML = {
    "stages": {
        "evaluate": {
            "foreach": "${models}",
            "do": {
                "cmd": "python -c pass",
                "params": ["train.lr", "models.${key}"],
                "metrics": [{"metrics/eval/${key}.json": {"cache": False}}],
            },
        }
    }
}

# blur.laplacian_var.recon per variant: a gets sharper (+20 %), b blurrier (-25 %), c is new,
# d is removed, e stays put.
OLD_SHARPNESS = {"a": 0.010, "b": 0.020, "d": 0.005, "e": 0.007}
NEW_SHARPNESS = {"a": 0.012, "b": 0.015, "c": 0.030, "e": 0.007}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def png_bytes(path: Path, value: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(path)
    return path.read_bytes()


def write_state(repo: Path, lr: float, sharpness: dict[str, float]) -> None:
    """params.yaml, one eval JSON per variant (stale ones removed), as the pipeline would leave
    them."""
    models = {variant: {"z_dim": 8} for variant in sharpness}
    (repo / "params.yaml").write_text(
        yaml.safe_dump({"train": {"lr": lr, "epochs": 3}, "models": models})
    )
    eval_dir = repo / "metrics" / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    for stale in eval_dir.glob("*.json"):
        stale.unlink()
    for variant, value in sharpness.items():
        metrics = {
            "recon": {"mse": round(0.5 * value, 6), "psnr": 20.0},
            "blur": {"laplacian_var": {"input": 0.05, "recon": value, "sample": value / 2}},
        }
        (eval_dir / f"{variant}.json").write_text(json.dumps(metrics))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A repo at its second commit; the first is tagged ``base``. Returns the figure bytes per
    side."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "--initial-branch=main")
    Repo.init(str(root)).close()
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    figures = root / "reports" / "compare"

    write_state(root, 0.001, OLD_SHARPNESS)
    old = {
        "recon.png": png_bytes(figures / "recon.png", 0),
        "samples.png": png_bytes(figures / "samples.png", 128),
        "gone.png": png_bytes(figures / "gone.png", 50),
    }
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "tag", "base")

    write_state(root, 0.002, NEW_SHARPNESS)
    (figures / "gone.png").unlink()
    new = {
        "recon.png": png_bytes(figures / "recon.png", 255),
        "samples.png": old["samples.png"],
        "added.png": png_bytes(figures / "added.png", 200),
    }
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "change lr, add c, drop d")
    monkeypatch.chdir(root)
    return {"root": root, "old": old, "new": new}


def table_rows(markdown: str, section: str) -> dict[tuple[str, str], list[str]]:
    """``{(first cell, second cell): all cells}`` of the table under ``## section``."""
    body = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[(cells[0], cells[1])] = cells
    return rows


def test_report_tables_lines_and_figures(repo, capsys):
    main(["report", "--rev", "HEAD~1"])
    root = repo["root"]
    report = (root / "reports" / "pr.md").read_text()

    params = table_rows(report, "Params")
    assert params[("Path", "Param")] == ["Path", "Param", "HEAD~1", "workspace", "Change", "%"]
    assert params[("params.yaml", "train.lr")] == [
        "params.yaml",
        "train.lr",
        "0.001",
        "0.002",
        "+0.001",
        "+100.0%",
    ]
    assert (
        "params.yaml",
        "train.epochs",
    ) not in params  # unchanged keys stay out, as in dvc params diff

    metrics = table_rows(report, "Metrics")
    lap = "blur.laplacian_var.recon"
    assert metrics[("metrics/eval/a.json", lap)][2:] == ["0.01", "0.012", "+0.002", "+20.0%"]
    assert metrics[("metrics/eval/b.json", lap)][2:] == ["0.02", "0.015", "-0.005", "-25.0%"]
    assert metrics[("metrics/eval/a.json", "recon.mse")][2:] == [
        "0.005",
        "0.006",
        "+0.001",
        "+20.0%",
    ]
    assert metrics[("metrics/eval/c.json", lap)][2:4] == ["—", "0.03"]
    assert not any(path == "metrics/eval/e.json" for path, _ in metrics)

    # These files have no intervals: the relative rule decides, and says so.
    fallback = "as there is no 95 % interval over two or more seeds at HEAD~1 and the workspace"
    assert (
        f"- **a**: sharper, 0.01 → 0.012 (Δ +0.002, +20.0%; |Δ| > 0.0005 = 5% of |old|, {fallback})"
        in report
    )
    assert (
        f"- **b**: blurrier, 0.02 → 0.015 (Δ -0.005, -25.0%; |Δ| > 0.001 = 5% of |old|, {fallback})"
        in report
    )
    assert "- **c**: new, 0.03 (not at HEAD~1)" in report
    assert "- **d**: removed (was 0.005 at HEAD~1)" in report
    assert (
        f"- **e**: no significant change, 0.007 → 0.007 "
        f"(Δ +0.0, +0.0%; |Δ| ≤ 0.00035 = 5% of |old|, {fallback})" in report
    )
    assert "|Δ| > √(hw_old² + hw_new²)" in report  # the rule is stated

    # Both sides' figures are copied beside the report and linked relative to it.
    figures = table_rows(report, "Figures")
    assets = root / "reports" / "pr"
    for name, data in repo["old"].items():
        assert (assets / "HEAD-1" / name).read_bytes() == data
    for name, data in repo["new"].items():
        assert (assets / "workspace" / name).read_bytes() == data
    assert figures[("`recon.png`", "![recon.png at HEAD~1](pr/HEAD-1/recon.png)")][2] == (
        "![recon.png in the workspace](pr/workspace/recon.png)"
    )
    assert figures[("`gone.png`", "![gone.png at HEAD~1](pr/HEAD-1/gone.png)")][2] == "*(absent)*"
    assert ("`added.png`", "*(absent)*") in figures
    assert (
        "`samples.png` (unchanged)",
        "![samples.png at HEAD~1](pr/HEAD-1/samples.png)",
    ) in figures
    for link in [
        cell.split("](")[1].rstrip(")")
        for cells in figures.values()
        for cell in cells
        if "](" in cell
    ]:
        assert (root / "reports" / link).is_file(), link

    out = capsys.readouterr().out
    assert "a: sharper, 0.01 → 0.012 (Δ +0.002, +20.0%;" in out and "wrote reports/pr.md" in out


def test_uncommitted_workspace_against_a_tag_with_a_custom_out(repo):
    root = repo["root"]
    write_state(root, 0.004, {**NEW_SHARPNESS, "a": 0.006})
    report = build_report("base", out="review/base.md")

    assert report.path == root / "review" / "base.md"
    text = report.path.read_text()
    assert table_rows(text, "Params")[("params.yaml", "train.lr")][2:] == [
        "0.001",
        "0.004",
        "+0.003",
        "+300.0%",
    ]
    assert "- **a**: blurrier, 0.01 → 0.006 (Δ -0.004, -40.0%;" in text
    assert (root / "review" / "base" / "base" / "gone.png").read_bytes() == repo["old"]["gone.png"]
    assert {change.variant: change.status for change in report.sharpness} == {
        "a": "blurrier",
        "b": "blurrier",
        "c": "new",
        "d": "removed",
        "e": "no significant change",
    }


def test_same_revision_reports_no_change(repo):
    text = build_report("HEAD").markdown
    assert "No params changed." in text and "No metrics changed." in text
    assert "- **a**: no significant change, 0.012 → 0.012 (Δ +0.0, +0.0%;" in text


def test_unknown_revision_exits_2_and_writes_nothing(repo, capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "--rev", "no-such-branch"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("vaelab: error: --rev no-such-branch: no such commit")
        and "Traceback" not in err
    )
    assert not (repo["root"] / "reports" / "pr.md").exists()
    assert not (repo["root"] / "reports" / "pr").exists()


def test_refuses_to_replace_a_folder_it_did_not_write(repo, capsys):
    root = repo["root"]
    # --out reports.md would put its figures in reports/, where the pipeline's outputs live.
    with pytest.raises(SystemExit) as info:
        main(["report", "--rev", "base", "--out", "reports.md"])
    assert info.value.code == 2
    assert "reports: would be replaced" in capsys.readouterr().err
    assert (root / "reports" / "compare" / "recon.png").read_bytes() == repo["new"]["recon.png"]
    assert not (root / "reports.md").exists()

    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(SystemExit) as info:
        main(["report", "--rev", "base", "--out", "notes.md"])
    assert info.value.code == 2
    assert "notes: would be replaced" in capsys.readouterr().err
    assert (root / "notes" / "todo.txt").read_text() == "mine"


def test_rerun_replaces_the_previous_figures(repo):
    build_report("HEAD~1")
    build_report("HEAD")
    assets = repo["root"] / "reports" / "pr"
    assert sorted(path.name for path in assets.iterdir()) == [".vaelab-report", "HEAD", "workspace"]


def test_outside_a_dvc_repo_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["report", "--rev", "main"])
    assert info.value.code == 2
    assert "not inside a DVC repository" in capsys.readouterr().err


def evaluation(
    value: float | None, interval: tuple[float, float] | None = None, seeds: int = 3
) -> dict:
    """An evaluation file as evaluate writes it (before the headline split): the mean, and its
    interval."""
    metrics: dict = {"blur": {"laplacian_var": {"recon": value}}}
    if interval is not None:
        low, high = interval
        metrics["intervals"] = {
            "blur.laplacian_var.recon": {
                "mean": value,
                "low": low,
                "high": high,
                "sd": 0.001,
                "seeds": seeds,
                "images": 25,
            }
        }
    return metrics


def records(**documents: dict) -> dict[str, EvalRecord]:
    return {
        variant: EvalRecord(f"metrics/eval/{variant}.json", measured(doc))
        for variant, doc in documents.items()
    }


def verdict(old: dict, new: dict) -> SharpnessChange:
    (change,) = sharpness_changes(records(v=old), records(v=new), "main")
    return change


def test_a_change_beyond_both_intervals_is_sharper_or_blurrier():
    # Half-widths 0.0003 and 0.0004: the noise of the difference is hypot = 0.0005.
    up = verdict(evaluation(0.0100, (0.0097, 0.0103)), evaluation(0.0106, (0.0102, 0.0110)))
    assert (up.status, up.rule) == ("sharper", "interval")
    assert up.threshold == pytest.approx(0.0005) and up.delta == pytest.approx(0.0006)
    assert sharpness_line(up, "main") == (
        "- **v**: sharper, 0.01 [0.0097, 0.0103] → 0.0106 [0.0102, 0.011] "
        "(Δ +0.0006, +6.0%; |Δ| > 0.0005 = √(hw_old² + hw_new²) of the 95 % intervals)"
    )
    down = verdict(evaluation(0.0100, (0.0097, 0.0103)), evaluation(0.0094, (0.0090, 0.0098)))
    assert (down.status, down.rule) == ("blurrier", "interval")


def test_a_change_within_the_noise_is_no_significant_change_even_when_large():
    # +10 % (what another machine's rerun moved in issue 12), inside intervals of ±8 %.
    change = verdict(evaluation(0.0100, (0.0092, 0.0108)), evaluation(0.0110, (0.0102, 0.0118)))
    assert (change.status, change.rule) == ("no significant change", "interval")
    assert change.threshold == pytest.approx(0.0008 * 2**0.5)
    assert sharpness_line(change, "main") == (
        "- **v**: no significant change, 0.01 [0.0092, 0.0108] → 0.011 [0.0102, 0.0118] "
        "(Δ +0.001, +10.0%; |Δ| ≤ 0.0011314 = √(hw_old² + hw_new²) of the 95 % intervals)"
    )


def test_without_an_interval_over_seeds_the_relative_threshold_decides():
    # The old side predates intervals; the new one has a single seed (images only): 5 % of |old|.
    old_file = verdict(evaluation(0.0100), evaluation(0.0104, (0.0090, 0.0118)))
    assert (old_file.status, old_file.rule) == ("no significant change", "relative")
    assert old_file.threshold == pytest.approx(0.0005)
    assert old_file.note == "no 95 % interval over two or more seeds at main"
    one_seed = verdict(
        evaluation(0.0100, (0.0099, 0.0101)), evaluation(0.0104, (0.0103, 0.0105), seeds=1)
    )
    assert (one_seed.status, one_seed.rule) == ("no significant change", "relative")
    assert one_seed.note == "no 95 % interval over two or more seeds at the workspace"
    beyond = verdict(evaluation(0.0100), evaluation(0.0094))
    assert (beyond.status, beyond.rule) == ("blurrier", "relative")
    assert sharpness_line(beyond, "main") == (
        "- **v**: blurrier, 0.01 → 0.0094 (Δ -0.0006, -6.0%; |Δ| > 0.0005 = 5% of |old|, "
        "as there is no 95 % interval over two or more seeds at main and the workspace)"
    )


def test_identical_values_are_no_significant_change():
    # Point intervals (a constant metric) make the noise 0; equal values are still no change.
    for interval in ((0.01, 0.01), None):
        change = verdict(evaluation(0.01, interval), evaluation(0.01, interval))
        assert change.status == "no significant change" and change.delta == 0.0
    assert verdict(evaluation(0.0), evaluation(0.0)).status == "no significant change"


def test_sharpness_verdicts_that_cannot_be_a_percentage():
    verdicts = sharpness_changes(
        records(zero=evaluation(0.0), old_format={"recon": {"mse": 0.1}}),
        records(zero=evaluation(0.5), old_format=evaluation(0.0), broken={"blur": None}),
        "main",
    )
    lines = [sharpness_line(verdict, "main") for verdict in verdicts]
    assert lines == [
        "- **broken**: cannot compare: no numeric blur.laplacian_var.recon in "
        "metrics/eval/broken.json at the workspace",
        "- **old_format**: cannot compare: no numeric blur.laplacian_var.recon in "
        "metrics/eval/old_format.json at main",
        "- **zero**: sharper, 0.0 → 0.5 (Δ +0.5, no % from 0; |Δ| > 0.0 = 5% of |old|, "
        "as there is no 95 % interval over two or more seeds at main and the workspace)",
    ]


def test_the_detail_file_is_read_when_there_is_one(tmp_path):
    """After the headline/detail split the interval is in metrics/detail/eval/; before it, in
    metrics/eval/."""
    from vaelab.prdiff.diff import Side

    old_root, new_root = tmp_path / "old", tmp_path / "new"
    (old_root / "metrics" / "eval").mkdir(parents=True)
    (old_root / "metrics" / "eval" / "v.json").write_text(
        json.dumps(evaluation(0.0100, (0.0097, 0.0103)))
    )
    for folder, document in (
        ("eval", {"sharp": 0.0106, "mse": 0.01}),
        ("detail/eval", evaluation(0.0106, (0.0102, 0.0110))),
    ):
        (new_root / "metrics" / folder).mkdir(parents=True)
        (new_root / "metrics" / folder / "v.json").write_text(json.dumps(document))
    # Only a headline: its sharp, without an interval.
    (new_root / "metrics" / "eval" / "h.json").write_text(json.dumps({"sharp": 0.02}))
    (old_root / "metrics" / "eval" / "h.json").write_text(json.dumps(evaluation(0.02)))

    with Side(old_root, None) as old_side, Side(new_root, None) as new_side:
        old, new = read_eval_records(old_side, "main"), read_eval_records(new_side, "the workspace")
    assert new["v"] == EvalRecord("metrics/detail/eval/v.json", Measured(0.0106, 0.0102, 0.0110, 3))
    assert new["h"] == EvalRecord("metrics/eval/h.json", Measured(0.02))
    changes = {change.variant: change for change in sharpness_changes(old, new, "main")}
    assert (changes["v"].status, changes["v"].rule) == ("sharper", "interval")
    assert (changes["h"].status, changes["h"].rule) == ("no significant change", "relative")


@pytest.fixture
def base_worktree(repo, tmp_path) -> Path:
    """A git worktree of ``base`` in which a reproduction left other numbers than the committed
    ones."""
    base = tmp_path / "base"
    git(repo["root"], "worktree", "add", "-q", "--detach", str(base), "base")
    write_state(base, 0.001, {**OLD_SHARPNESS, "a": 0.0115})
    png_bytes(base / "reports" / "compare" / "recon.png", 77)
    return base


def test_base_dir_compares_with_the_base_checkouts_workspace(repo, base_worktree, capsys):
    main(["report", "--rev", "base", "--base-dir", str(base_worktree)])
    report = (repo["root"] / "reports" / "pr.md").read_text()
    sha = git(repo["root"], "rev-parse", "base")
    assert (
        f"`base` (`{sha[:8]}`) is read from the workspace of `{base_worktree}`, a checkout of it"
        in report
    )

    assert table_rows(report, "Params")[("params.yaml", "train.lr")][2:] == [
        "0.001",
        "0.002",
        "+0.001",
        "+100.0%",
    ]
    metrics = table_rows(report, "Metrics")
    lap = "blur.laplacian_var.recon"
    # The worktree's reproduced 0.0115, not the 0.01 committed at base.
    assert metrics[("metrics/eval/a.json", lap)][2:] == ["0.0115", "0.012", "+0.0005", "+4.3%"]
    assert metrics[("metrics/eval/d.json", lap)][2:4] == ["0.005", "—"]
    assert not any(path == "metrics/eval/e.json" for path, _ in metrics)
    assert "- **a**: no significant change, 0.0115 → 0.012 (Δ +0.0005, +4.3%;" in report
    assert (repo["root"] / "reports" / "pr" / "base" / "recon.png").read_bytes() == (
        base_worktree / "reports" / "compare" / "recon.png"
    ).read_bytes()
    assert "wrote reports/pr.md" in capsys.readouterr().out


def test_base_dir_at_another_commit_or_no_checkout_exits_2_and_writes_nothing(
    repo, base_worktree, tmp_path, capsys
):
    with pytest.raises(SystemExit) as info:
        main(["report", "--rev", "HEAD", "--base-dir", str(base_worktree)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    base_sha = git(repo["root"], "rev-parse", "base")
    assert f"--base-dir {base_worktree}: a checkout of {base_sha[:8]}, not of --rev HEAD" in err
    assert "Traceback" not in err

    (tmp_path / "plain").mkdir()
    for folder in (tmp_path / "plain", tmp_path / "missing"):
        with pytest.raises(SystemExit) as info:
            main(["report", "--rev", "base", "--base-dir", str(folder)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"--base-dir {folder}: " in err and "git worktree add --detach" in err
    assert not (repo["root"] / "reports" / "pr.md").exists()
    assert not (repo["root"] / "reports" / "pr").exists()
