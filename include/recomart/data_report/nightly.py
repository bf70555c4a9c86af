"""The nightly copy of the report: ``<state>/reports/<day>.html`` and an MLflow artifact.

Idempotent per day: a re-run rewrites the same file (atomically, :func:`write_atomically`) and logs
it again into the same MLflow run (found by its ``recomart.report_day`` tag), replacing the artifact.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from recomart.config import Settings
from recomart.data_report.render import ReportData, write_report

EXPERIMENT = "recomart-data-report"
DAY_TAG = "recomart.report_day"
ARTIFACT_DIR = "data_report"


def nightly_path(s: Settings, day: date) -> Path:
    """``<state>/reports/<day>.html``."""
    return s.state_dir / "reports" / f"{day.isoformat()}.html"


def log_to_mlflow(s: Settings, path: Path, day: date) -> str:
    """Log ``path`` as artifact ``data_report/<name>`` of the day's run in experiment
    ``recomart-data-report`` (created with the deployment's artifact folder); returns the run id."""
    from mlflow import MlflowClient

    from recomart.model.registry import ensure_experiment

    client = MlflowClient(tracking_uri=s.mlflow_tracking_uri)
    experiment_id = ensure_experiment(s.mlflow_tracking_uri, s.mlflow_artifacts_dir, name=EXPERIMENT)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{DAY_TAG}` = '{day.isoformat()}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {DAY_TAG: day.isoformat(), "recomart.dataset": s.dataset}
        run_id = client.create_run(experiment_id, run_name=f"data-report-{day.isoformat()}", tags=tags).info.run_id
    client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    client.set_terminated(run_id)
    return run_id


def write_nightly(s: Settings, day: date, dsn: str | None = None) -> tuple[Path, str, ReportData]:
    """Write the day's report and log it to MLflow: ``(path, MLflow run id, the report's data)``."""
    path = nightly_path(s, day)
    data = write_report(s, path, dsn)
    return path, log_to_mlflow(s, path, day), data
