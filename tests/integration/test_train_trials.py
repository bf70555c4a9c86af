"""The train DAG's fanned-out round (prepare, one task per trial and per tuned ranker generator, the
reduce, the blend and the SVD refits, the test window, the ranker's fit, test window and serving fit,
register, teardown)
gives the single-task round's result: the same chosen SVD parameters and validation figures as
``tune_svd``, the same registered model and metrics; each trial is a nested MLflow run of the DAG run's
parent run; unchanged inputs end as the logged no-op (real Postgres, MLflow, staged Parquet)."""

from __future__ import annotations

import dataclasses
import json
import time
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from test_blend_training import marts_dsn  # noqa: F401  (the fixture: planted marts in a private database)
from test_train import planted_ratings

from recomart.model.catalogue import Catalogue
from recomart.model.config import TrainingConfig
from recomart.model.registry import load_champion
from recomart.model.staging import StagedRound, read_catalogue, read_prepared, read_round, stage_round
from recomart.model.train import prepared_split, train_tune_evaluate
from recomart.model.trials import choose_trial, plan_trials, run_trial, tuned_from_choice
from recomart.model.tuning import tune_svd
from recomart.ranking import ease, rp3beta, svd
from recomart.ranking.svd import FITTED
from recomart.tasks.train import read_round_inputs, train_and_register
from recomart.tasks.train_ranker import (
    RANKER_GENERATORS,
    fit_ranker,
    ranker_serving_fit,
    ranker_test_window,
    tune_ranker_generator,
)
from recomart.tasks.train_round import OPENED, REFIT_WINDOWS, fit_blend, refit_svd, register_round, score_test_window
from recomart.tasks.train_trials import choose_params, discard_trials, prepare_trials, run_one_trial, stage_folder

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-12-03T07:30:00+00:00"


def _without_seconds(trials: list[dict]) -> list[dict]:
    return [{key: value for key, value in trial.items() if key != "seconds"} for trial in trials]


def _mlflow(s):
    from mlflow import MlflowClient

    return MlflowClient(s.mlflow_tracking_uri, s.mlflow_tracking_uri)


@pytest.fixture(scope="module")
def single(marts_dsn: str, test_settings) -> dict:  # noqa: F811
    """The single-task round on the planted marts (model ``<name>_single``)."""
    return train_and_register(
        dataclasses.replace(test_settings, model_name=f"{test_settings.model_name}_single"), marts_dsn
    )


def _mapped_round(s, marts_dsn: str, run_id: str) -> dict:  # noqa: F811
    """The DAG's tasks, in their order, on the marts: the trials run in reverse, each twice (a retry), and
    the reduce sees them out of order; the teardown runs last."""
    plan = prepare_trials(s, marts_dsn, airflow_run_id=run_id)
    specs = plan["trials"]
    staged = read_round(stage_folder(s, run_id), TrainingConfig.from_settings(s))
    for name in reversed(RANKER_GENERATORS):  # beside the trials in the DAG
        tune_ranker_generator(s, specs, name, airflow_run_id=run_id)
    results = [run_one_trial(s, spec) for spec in reversed(specs)]
    results = [run_one_trial(s, spec) for spec in specs]  # retried trials replace their nested runs
    results = json.loads(json.dumps(results[1:] + results[:1]))  # through XCom's JSON, out of order
    choice = choose_params(s, results)
    fit_blend(s, specs, choice, airflow_run_id=run_id)
    for kept in (OPENED, FITTED, ease.FITTED, rp3beta.FITTED):  # as in a process of its own: nothing kept
        kept.results.clear()
    # it needs the blend and the tuning, not the refits; its SVD generator is the chosen trial's factors,
    # its EASE and RP3β the tuning tasks' fits of the chosen points
    with (
        mock.patch.object(svd, "_fit_surprise", side_effect=AssertionError("fit_ranker fitted an SVD")),
        mock.patch.object(ease, "ease_weights", side_effect=AssertionError("fit_ranker fitted EASE")),
        mock.patch.object(rp3beta, "rp3beta_similarity", side_effect=AssertionError("fit_ranker fitted RP3β")),
    ):
        fit_ranker(s, specs, choice, airflow_run_id=run_id)
    for window in reversed(REFIT_WINDOWS):  # the parallel tasks, in another order than the DAG lists them
        refit_svd(s, specs, choice, window, airflow_run_id=run_id)
    # each as in a process of its own: nothing kept
    for task in (score_test_window, ranker_serving_fit, ranker_test_window):
        for kept in (OPENED, FITTED, ease.FITTED, rp3beta.FITTED):
            kept.results.clear()
        task(s, specs, choice, airflow_run_id=run_id)
    OPENED.results.clear()
    summary = register_round(s, marts_dsn, specs, choice, airflow_run_id=run_id)
    discard_trials(s, specs)
    return {"settings": s, "specs": specs, "choice": choice, "summary": summary, "staged": staged}


@pytest.fixture(scope="module")
def mapped(marts_dsn: str, test_settings) -> dict:  # noqa: F811
    """The DAG's tasks on the same marts as :func:`single` (model ``<name>_mapped``)."""
    s = dataclasses.replace(test_settings, model_name=f"{test_settings.model_name}_mapped")
    return _mapped_round(s, marts_dsn, RUN_ID)


def test_the_reduce_chooses_tune_svds_parameters_from_the_same_validation_figures(
    marts_dsn: str,  # noqa: F811
    test_settings,
    mapped,
) -> None:
    config = TrainingConfig.from_settings(test_settings)
    inputs = read_round_inputs(test_settings, marts_dsn)
    _, split = prepared_split(inputs.ratings, inputs.events, config)
    searched = tune_svd(split.train, split.valid, config, exclude_seen=True)
    choice = mapped["choice"]
    assert len(mapped["specs"]) == config.max_trials and len(searched.trials) == config.max_trials
    assert choice["params"] == searched.params
    assert _without_seconds(choice["trials"]) == _without_seconds(searched.trials)
    assert choice["best_index"] == next(t["index"] for t in searched.trials if t["params"] == searched.params)
    assert choice["n_negatives"] == searched.train_negatives > 0  # implicit feed: negatives were sampled


def test_the_registered_model_and_its_metrics_equal_the_single_task_rounds(single, mapped, test_settings) -> None:
    summary, s = mapped["summary"], mapped["settings"]
    assert summary["decision"] == single["decision"] == "promoted"
    assert summary["metrics"] == single["metrics"]
    assert "ranker" in summary["metrics"]  # the ranker's tasks ran, with the single round's test figures
    assert summary["blend"] == single["blend"]
    assert summary["data_digest"] == single["data_digest"] == mapped["staged"].data_digest
    assert summary["inputs_digest"] == single["inputs_digest"] == mapped["staged"].inputs_digest
    ours = load_champion(s.mlflow_tracking_uri, s.model_name)
    theirs = load_champion(test_settings.mlflow_tracking_uri, f"{test_settings.model_name}_single")
    assert ours is not None and theirs is not None
    np.testing.assert_array_equal(ours.recommender.svd.model.user_factors, theirs.recommender.svd.model.user_factors)
    np.testing.assert_array_equal(ours.recommender.svd.model.item_bias, theirs.recommender.svd.model.item_bias)


def test_a_registered_ranker_is_the_single_task_rounds_ranker(marts_dsn, test_settings) -> None:  # noqa: F811
    """With the ranker forced (``RECOMART_TRAIN_RANKER=ranker``), the ranker's tasks (fit, test window and
    serving fit, each in a process of its own) register what the single-task round registers."""
    forced = dataclasses.replace(test_settings, train_ranker="ranker")
    single = train_and_register(dataclasses.replace(forced, model_name=f"{forced.model_name}_single_ranker"), marts_dsn)
    s = dataclasses.replace(forced, model_name=f"{forced.model_name}_mapped_ranker")
    summary = _mapped_round(s, marts_dsn, "manual__2026-12-06T11:00:00+00:00")["summary"]
    assert summary["strategy"] == single["strategy"] == "ranker"
    assert summary["metrics"] == single["metrics"]
    assert summary["timings"]["ranker_serve_fit_s"] > 0
    ours = load_champion(s.mlflow_tracking_uri, s.model_name)
    theirs = load_champion(forced.mlflow_tracking_uri, f"{forced.model_name}_single_ranker")
    assert ours is not None and theirs is not None and ours.recommender.ranker is not None
    ranked, expected = ours.recommender.ranker, theirs.recommender.ranker
    assert ranked.booster.model_to_string() == expected.booster.model_to_string()
    arrays, expected_arrays = ranked.state()[0], expected.state()[0]
    assert sorted(arrays) == sorted(expected_arrays)
    for key, values in arrays.items():  # every generator refitted on all the data, as in one process
        np.testing.assert_array_equal(values, expected_arrays[key], err_msg=key)


def test_each_trial_is_one_nested_run_of_the_parent_run_the_model_is_logged_into(mapped) -> None:
    s, summary, choice = mapped["settings"], mapped["summary"], mapped["choice"]
    client = _mlflow(s)
    parent = client.get_run(mapped["staged"].parent_run_id)
    assert summary["run_id"] == parent.info.run_id and parent.info.status == "FINISHED"
    assert parent.data.tags["airflow_run_id"] == RUN_ID and parent.data.params["tuning_trials"] == str(
        len(mapped["specs"])
    )
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_index = {int(run.data.tags["trial_index"]): run for run in children}
    assert len(children) == len(by_index) == len(mapped["specs"])  # the retries left one run per trial
    for trial in choice["trials"]:
        run = by_index[trial["index"]]
        assert run.info.status == "FINISHED" and run.info.run_name == f"trial-{trial['index']:02d}"
        assert run.data.metrics["valid_ndcg_at_10"] == pytest.approx(trial["metrics"]["ndcg_at_10"])
        assert {key: str(value) for key, value in trial["params"].items()} == run.data.params


def test_the_teardown_removed_the_staged_round_and_a_rerun_is_the_logged_no_op(mapped, marts_dsn) -> None:  # noqa: F811
    s = mapped["settings"]
    assert not stage_folder(s, RUN_ID).exists()
    again = prepare_trials(s, marts_dsn, airflow_run_id="manual__again")
    assert again["no_change"].startswith("inputs unchanged since version 1")
    assert not stage_folder(s, "manual__again").exists()
    assert [str(v.version) for v in _mlflow(s).search_model_versions(f"name = '{s.model_name}'")] == ["1"]


def test_a_run_that_never_registered_ends_its_parent_run_failed_and_leaves_no_stage(marts_dsn, test_settings) -> None:  # noqa: F811
    s = dataclasses.replace(test_settings, model_name=f"{test_settings.model_name}_failed")
    specs = prepare_trials(s, marts_dsn, airflow_run_id="manual__failed")["trials"]
    parent = read_round(stage_folder(s, "manual__failed"), TrainingConfig.from_settings(s)).parent_run_id
    assert _mlflow(s).get_run(parent).info.status == "RUNNING"
    discard_trials(s, specs)  # the teardown after a failed trial
    assert _mlflow(s).get_run(parent).info.status == "FAILED"
    assert not stage_folder(s, "manual__failed").exists()


def _planted_events() -> pd.DataFrame:
    """Purchases of the planted pairs, a fifth of them bought again a week later (a repeat feed)."""
    pairs = planted_ratings()
    again = pairs.iloc[::5].assign(event_timestamp=lambda f: f["event_timestamp"] + pd.Timedelta(days=7))
    events = pd.concat([pairs, again], ignore_index=True).sort_values("event_timestamp", ignore_index=True)
    return events[["user_id", "item_id", "event_timestamp"]].assign(
        event_type="purchase", order_id=[f"o{i}" for i in range(len(events))], quantity=1
    )


def test_a_repeat_feeds_staged_events_give_the_single_rounds_result(tmp_path) -> None:
    """A repeat feed's event split staged as Parquet (its combined train + validation pairs too) reads back
    as cut, and the trials run from the staged split give the same round as one process."""
    events = _planted_events()
    items = np.sort(events["item_id"].unique())
    products = pd.DataFrame({"item_id": items, "title": items, "description": "x", "category": "c", "brand": "b"})
    catalogue = Catalogue(products.assign(price=1.0), None, repeat_purchases=True)
    config = TrainingConfig(max_trials=2)
    single = train_tune_evaluate(None, config, events=events, catalogue=catalogue)
    data, split = prepared_split(None, events, config)
    stage_round(tmp_path, catalogue, data, split)
    staged_data, staged_split = read_prepared(tmp_path)
    pd.testing.assert_frame_equal(staged_data, data)
    assert split.combined is not None and staged_split.info == split.info
    for part in ("train", "valid", "test", "train_valid"):
        pd.testing.assert_frame_equal(getattr(staged_split, part), getattr(split, part))
    specs = plan_trials(config, split, tmp_path, started=time.time())
    choice = choose_trial([run_trial(spec, config, exclude_seen=False) for spec in specs], config)
    staged = StagedRound("run", "inputs", "data", repr(config), "marts.user_item_events", True, "0", "0")
    mapped = train_tune_evaluate(
        None, config, events=events, catalogue=read_catalogue(tmp_path, staged), tuned=tuned_from_choice(choice)
    )
    assert _without_seconds(mapped.trials) == _without_seconds(single.trials) and len(single.trials) == 2
    assert mapped.params == single.params and mapped.metrics == single.metrics
    assert mapped.data_digest == single.data_digest
    np.testing.assert_array_equal(mapped.model.user_factors, single.model.user_factors)
