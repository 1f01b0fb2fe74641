"""The compare report, ``reports/compare.md`` and ``reports/compare/*.png``, as one MLflow run.

One run named ``compare`` (tag ``stage=compare``) per content: its ``logged_md5`` tag is
the md5 of the report's files, and a pipeline run whose report has that md5 already in
the store logs nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vaelab.registry.train_runs import LOGGED_TAG, Logged
from vaelab.tracking import STAGE_TAG, run_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("vaelab.registry")

COMPARE_STAGE = "compare"
REPORT_FILE = "compare.md"
FIGURES_DIR = "compare"


def report_files(reports_root: Path) -> Logged | None:
    """The report and its figures, or None when compare has written no report here."""
    report = reports_root / REPORT_FILE
    if not report.is_file():
        return None
    figures = reports_root / FIGURES_DIR
    pngs = sorted(figures.glob("*.png")) if figures.is_dir() else []
    return Logged(((report, ""), *((png, FIGURES_DIR) for png in pngs)), {})


def log_compare(
    client: MlflowClient, experiment_id: str, reports_root: Path
) -> dict[str, str | bool] | None:
    """Log the compare report once per content; ``{"run_id", "logged"}``, or None without a report."""
    files = report_files(reports_root)
    if files is None:
        log.info("%s: no compare report, none logged", reports_root / REPORT_FILE)
        return None
    digest = files.md5()
    query = f"tags.{STAGE_TAG} = '{COMPARE_STAGE}' and tags.{LOGGED_TAG} = '{digest}'"
    same = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if same:
        return {"run_id": same[0].info.run_id, "logged": False}
    tags = {**run_tags(), STAGE_TAG: COMPARE_STAGE}
    run = client.create_run(experiment_id, run_name=COMPARE_STAGE, tags=tags)
    run_id = run.info.run_id
    try:
        for path, folder in files.files:
            client.log_artifact(run_id, str(path), folder or None)
        client.set_tag(run_id, LOGGED_TAG, digest)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    log.info("logged the compare report in run %s", run_id)
    return {"run_id": run_id, "logged": True}
