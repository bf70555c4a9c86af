"""Task bodies of the ``train`` DAG: one training round with its SVD trials fanned out.

:func:`prepare_trials` (setup) -> :func:`run_one_trial` per trial (dynamic task mapping) ->
:func:`choose_params` (the reduce) -> the round's remaining steps (:mod:`recomart.tasks.train_round`:
blend fit and SVD refits, then test window and learned ranker, then gate and register) ->
:func:`discard_trials` (teardown).  The round is the one :func:`recomart.tasks.train.train_and_register`
runs in one process, with the same result for the same inputs and seed; the model code is in
:mod:`recomart.model.trials` (the trials), :mod:`recomart.model.staging` (the run's folder) and
:mod:`recomart.model.trial_runs` (the MLflow parent run and its nested trial runs).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from recomart.config import Settings
from recomart.model.config import TrainingConfig
from recomart.model.staging import StagedRound, discard_stage, peek_round, read_round, stage_round, write_round
from recomart.model.train import data_digest, prepared_split
from recomart.model.trial_runs import end_open_run, log_trial_run, open_parent_run
from recomart.model.trials import TrialSpec, choose_trial, plan_trials, run_trial
from recomart.tasks.train import read_round_inputs, unchanged_summary

log = logging.getLogger(__name__)


def stage_folder(s: Settings, airflow_run_id: str) -> Path:
    """The staging folder of DAG run ``airflow_run_id`` (its id hashed: run ids hold ``:`` and ``+``)."""
    return s.train_staging_dir / hashlib.sha256(airflow_run_id.encode()).hexdigest()[:16]


def _discard(s: Settings, folder: Path) -> None:
    """End the parent run staged in ``folder`` if still open, then remove the folder."""
    staged = peek_round(folder)
    if staged is not None:
        end_open_run(s.mlflow_tracking_uri, staged["parent_run_id"])
    discard_stage(folder)


def _sweep_abandoned(s: Settings, keep: Path) -> None:
    """Discard the folders of earlier DAG runs whose teardown never ran (the DAG runs one at a time)."""
    if not s.train_staging_dir.exists():
        return
    for folder in sorted(s.train_staging_dir.iterdir()):
        if folder.is_dir() and folder != keep:
            log.info("discarding the staged round of an abandoned train run: %s", folder)
            _discard(s, folder)


def prepare_trials(s: Settings, dsn: str, *, airflow_run_id: str) -> dict[str, Any]:
    """The first task: ``{"no_change": reason, ...}`` when the inputs equal the last registered version's;
    otherwise read the marts, stage the round and its split, open the MLflow parent run and return
    ``{"trials": [trial spec dicts], "inputs_digest"}``."""
    config = TrainingConfig.from_settings(s)
    digest, unchanged = unchanged_summary(s, dsn, config)
    if unchanged is not None:
        return unchanged
    folder = stage_folder(s, airflow_run_id)
    _sweep_abandoned(s, keep=folder)
    _discard(s, folder)  # a retried first task starts over
    inputs = read_round_inputs(s, dsn)
    data, split = prepared_split(inputs.ratings, inputs.events, config)
    stage_round(folder, inputs.catalogue, data, split)
    data_hash = data_digest(data)
    tags = {"dataset": s.dataset, "inputs_digest": digest, "airflow_run_id": airflow_run_id}
    experiment_id, parent_run_id = open_parent_run(
        s.mlflow_tracking_uri, s.mlflow_artifacts_dir, run_name=f"svd-{data_hash[:12]}", tags=tags
    )
    staged = StagedRound(
        airflow_run_id=airflow_run_id,
        inputs_digest=digest,
        data_digest=data_hash,
        config=repr(config),
        dataset_source=inputs.dataset_source,
        repeat_purchases=inputs.catalogue.repeat_purchases,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
    )
    write_round(folder, staged)
    specs = plan_trials(config, split, folder, started=time.time())
    log.info("round staged in %s: %d trials under MLflow run %s", folder, len(specs), parent_run_id)
    return {"trials": [spec.as_dict() for spec in specs], "inputs_digest": digest}


def run_one_trial(s: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    """A trial task: fit and score one candidate (:func:`recomart.model.trials.run_trial`) and log it as a
    nested run of the DAG run's parent run (a retry replaces its nested run)."""
    config = TrainingConfig.from_settings(s)
    trial = TrialSpec.from_dict(spec)
    staged = read_round(Path(trial.stage), config)
    result = run_trial(trial, config, exclude_seen=staged.exclude_seen)
    if "metrics" in result:
        log_trial_run(s.mlflow_tracking_uri, staged.experiment_id, staged.parent_run_id, result, config.k)
    else:
        log.info("trial %d: %s", trial.index, result.get("skipped") or result.get("error"))
    return result


def choose_params(s: Settings, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The reduce task: the best trial on validation (:func:`recomart.model.trials.choose_trial`)."""
    return choose_trial(results, TrainingConfig.from_settings(s))


def discard_trials(s: Settings, specs: list[dict[str, Any]]) -> None:
    """The teardown: end the parent run as ``FAILED`` unless the model was registered into it, and remove
    the DAG run's staged round and trial factors."""
    if specs:
        _discard(s, Path(specs[0]["stage"]))
