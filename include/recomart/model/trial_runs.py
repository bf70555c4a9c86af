"""The MLflow runs of a train DAG run: one parent run, one nested run per tuning trial.

The first task opens the parent run (:func:`open_parent_run`, named and tagged as the single-task
round's run); each trial task logs its own nested run into it (:func:`log_trial_run`) through the
client API, so that trial tasks on several workers never share an active run; the final task logs the
model into the parent run and ends it (:func:`recomart.model.registry.log_and_register` with
``run_id``); the run's teardown ends a parent run left open by a failed task as ``FAILED``
(:func:`end_open_run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recomart.model.registry import ensure_experiment
from recomart.model.tracking import stringify, trial_run_name, trial_run_record

log = logging.getLogger(__name__)

PARENT_RUN_TAG = "mlflow.parentRunId"


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def open_parent_run(
    tracking_uri: str, artifact_dir: Path, *, run_name: str, tags: Mapping[str, Any]
) -> tuple[str, str]:
    """``(experiment id, run id)`` of a new parent run, left ``RUNNING`` for the DAG run's later tasks."""
    experiment_id = ensure_experiment(tracking_uri, artifact_dir)
    run = _client(tracking_uri).create_run(experiment_id, tags=stringify(tags), run_name=run_name)
    return experiment_id, str(run.info.run_id)


def log_trial_run(tracking_uri: str, experiment_id: str, parent_run_id: str, trial: Mapping[str, Any], k: int) -> str:
    """Log ``trial`` (``index, params, metrics, seconds``) as a nested run of ``parent_run_id`` (the
    same params, metrics and tags as :func:`recomart.model.tracking.log_trials`), first deleting the
    runs an earlier attempt of the same trial left; returns the new run's id."""
    from mlflow.entities import Metric, Param, RunStatus, RunTag

    client = _client(tracking_uri)
    index = int(trial["index"])
    earlier = client.search_runs(
        [experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and tags.trial_index = '{index}'"
    )
    for run in earlier:
        client.delete_run(run.info.run_id)
    params, metrics, tags = trial_run_record(trial, k)
    run = client.create_run(experiment_id, tags={**tags, PARENT_RUN_TAG: parent_run_id}, run_name=trial_run_name(index))
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
        params=[Param(key, value) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return run_id


def end_open_run(tracking_uri: str, run_id: str) -> bool:
    """End ``run_id`` as ``FAILED`` if it is still running (its DAG run did not register a model);
    returns whether it was."""
    from mlflow.entities import RunStatus

    client = _client(tracking_uri)
    if client.get_run(run_id).info.status != RunStatus.to_string(RunStatus.RUNNING):
        return False
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    log.info("MLflow run %s of an unfinished train DAG run ended as FAILED", run_id)
    return True
