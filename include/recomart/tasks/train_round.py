"""Task bodies of the ``train`` DAG after its reduce: the round's remaining steps as parallel tasks.

After ``choose`` (:mod:`recomart.tasks.train_trials`), the round of
:func:`recomart.model.train.train_tune_evaluate` runs as parallel tasks, with the same result for the
same inputs and seed:

1. :func:`fit_blend` (the blend on validation) and :func:`refit_svd` (one mapped task per window:
   the chosen SVD refitted on train + validation, and on all the data) run in parallel;
2. then :func:`score_test_window` (the test window, the hybrid to register) runs beside the learned
   ranker's tasks (:mod:`recomart.tasks.train_ranker`; its generators were tuned beside the trials),
   all reading the refitted factors instead of fitting them again
   (:func:`recomart.ranking.svd.remember_fit`);
3. :func:`register_round` assembles the round (:func:`recomart.model.train.round_result`), gates and
   registers it into the DAG run's MLflow parent run.

Parts go through the DAG run's staging folder (:mod:`recomart.model.round_parts`); every task reads
the staged catalogue, prepared pairs and split (:func:`recomart.model.staging.read_prepared`), once per
process (:data:`OPENED`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.config import Settings
from recomart.features.names import FEATURE_SERVICE
from recomart.model.config import TrainingConfig
from recomart.model.promotion import register_result
from recomart.model.registry import load_champion_for_gate
from recomart.model.round_parts import (
    load_blend,
    load_ranker_stage,
    load_refit,
    load_scored,
    save_blend,
    save_refit,
    save_scored,
)
from recomart.model.staging import StagedRound, read_catalogue, read_prepared, read_round
from recomart.model.train import RoundSetup, fit_round_blend, round_result, score_round
from recomart.model.trials import tuned_from_choice
from recomart.ranking.kept import Kept, digest
from recomart.ranking.svd import fit_biased_svd, remember_fit
from recomart.tasks.common import store_features_at
from recomart.tasks.train import record_outcome

log = logging.getLogger(__name__)

#: the round last opened in this process: ``dag.test()`` (the demo's runner) runs every task of a DAG run
#: in one process, and the next task reuses the round instead of reading the staged split again; under
#: an executor each task is its own process and reads it once
OPENED: Kept[RoundSetup] = Kept(1)

REFIT_WINDOWS = ("train_valid", "all")
"""The windows the chosen SVD is refitted on: train + validation (the test figures), all the data (served)."""


def staged_round(specs: list[dict[str, Any]], config: TrainingConfig, airflow_run_id: str) -> tuple[Path, StagedRound]:
    """The DAG run's staging folder and its staged round; raises when the folder holds another run's."""
    folder = Path(specs[0]["stage"])
    staged = read_round(folder, config)
    if staged.airflow_run_id != airflow_run_id:
        raise RuntimeError(f"{folder} holds the round of DAG run {staged.airflow_run_id}, not {airflow_run_id}")
    return folder, staged


def open_round(
    s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], airflow_run_id: str
) -> tuple[Path, StagedRound, RoundSetup]:
    """The DAG run's staging folder, its staged round and the round's setup (the staged prepared pairs
    and split, the chosen SVD; ``timings``: ``prepare_s`` and the trials' summed ``tuning_s``)."""
    config = TrainingConfig.from_settings(s)
    folder, staged = staged_round(specs, config, airflow_run_id)
    key = digest(str(folder), json.dumps(dataclasses.asdict(staged)), json.dumps(choice, sort_keys=True, default=str))
    return folder, staged, OPENED.get(key, lambda: _read_setup(folder, staged, config, choice))


def _read_setup(folder: Path, staged: StagedRound, config: TrainingConfig, choice: dict[str, Any]) -> RoundSetup:
    started = time.perf_counter()
    data, split = read_prepared(folder)
    tuned = tuned_from_choice(choice)
    timings = {"prepare_s": time.perf_counter() - started, "tuning_s": sum(t["seconds"] for t in tuned.trials)}
    return RoundSetup(config, read_catalogue(folder, staged), data, split, tuned, staged.dataset_source, timings)


def _window_pairs(setup: RoundSetup, window: str) -> pd.DataFrame:
    return setup.split.train_valid if window == "train_valid" else setup.data


def remember_refits(folder: Path, setup: RoundSetup, windows: tuple[str, ...] = REFIT_WINDOWS) -> None:
    """Keep the refitted factors of ``windows`` as this process's fits of them (no fit twice)."""
    settings = setup.config.svd_settings(setup.tuned.params)
    for window in windows:
        fitted = load_refit(folder, window)
        if fitted is not None:
            remember_fit(_window_pairs(setup, window), settings, fitted)


def remember_train_fit(setup: RoundSetup) -> None:
    """Keep the chosen trial's factors as this process's fit of the train part (the learned ranker's SVD
    generator is fitted on it: a lookup instead of a fit)."""
    tuned = setup.tuned
    if tuned.train_model is not None:
        settings = setup.config.svd_settings(tuned.params)
        remember_fit(setup.split.train, settings, (tuned.train_model, tuned.train_negatives))


def fit_blend(s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str) -> dict:
    """Fit the blend on validation with the chosen SVD; returns its weights and why."""
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    started = time.perf_counter()
    blend = fit_round_blend(setup.split, setup.tuned, setup.catalogue, setup.config)
    save_blend(folder, blend, time.perf_counter() - started)
    return {"weights": dict(blend.weights), "reason": blend.reason}


def refit_svd(
    s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], window: str, *, airflow_run_id: str
) -> dict:
    """Refit the chosen SVD on ``window`` (:data:`REFIT_WINDOWS`; ``all`` only with ``refit_full``)."""
    if window not in REFIT_WINDOWS:
        raise ValueError(f"unknown refit window {window!r}: expected one of {REFIT_WINDOWS}")
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    if window == "all" and not setup.config.refit_full:
        return {"window": window, "skipped": "refit_full is off: the served SVD is the train + validation fit"}
    started = time.perf_counter()
    fitted = fit_biased_svd(_window_pairs(setup, window), setup.config.svd_settings(setup.tuned.params))
    seconds = time.perf_counter() - started
    save_refit(folder, window, fitted, seconds)
    log.info("SVD refitted on %s in %.1fs (%d negatives)", window, seconds, fitted[1])
    return {"window": window, "seconds": seconds}


def score_test_window(s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str) -> dict:
    """Score every contender (and the champion) on the test window, fit the hybrid to register."""
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    blend, _ = load_blend(folder)
    remember_refits(folder, setup)
    config = setup.config
    scored = score_round(
        setup.data,
        setup.split,
        setup.tuned,
        blend,
        setup.catalogue,
        config,
        champion=load_champion_for_gate(s.mlflow_tracking_uri, s.model_name),
        features_at=store_features_at(s) if config.ranker != "off" else None,
    )
    save_scored(folder, scored)
    return {"timings": scored.timings, "champion_version": scored.champion_version}


def register_round(
    s: Settings, dsn: str, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str
) -> dict[str, Any]:
    """The last task: the round from its parts, logged into the parent run, gated and registered;
    returns the decision row (``ops.model_promotions``) with the tuning's choice."""
    folder, staged, setup = open_round(s, specs, choice, airflow_run_id)
    blend, blend_s = load_blend(folder)
    setup = dataclasses.replace(setup, timings={**setup.timings, "blend_fit_s": blend_s})
    result = round_result(setup, blend, load_scored(folder), load_ranker_stage(folder))
    outcome = register_result(
        result,
        tracking_uri=s.mlflow_tracking_uri,
        model_name=s.model_name,
        artifact_dir=s.mlflow_artifacts_dir,
        feature_service=FEATURE_SERVICE,
        tags={"dataset": s.dataset, "inputs_digest": staged.inputs_digest, "airflow_run_id": airflow_run_id},
        run_id=staged.parent_run_id,
    )
    summary = record_outcome(s, dsn, outcome, staged.inputs_digest, airflow_run_id=airflow_run_id)
    return {**summary, "tuning": {key: choice[key] for key in ("params", "best_index", "reason")}}
