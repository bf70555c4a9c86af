"""Task bodies of the ``train`` DAG for the learned ranker's stage (:mod:`recomart.model.ranker_stage`).

The stage's steps run as tasks of their own so that no step waits for one it does not need:

1. :func:`tune_ranker_generator` (one mapped task per tuned generator, EASE and RP3β) chooses its
   parameters on validation beside the SVD trials: it reads only the staged split;
2. :func:`fit_ranker` (after the blend and the tuning, beside the SVD's refits) fits the ranker on
   the train part (its SVD generator is the chosen trial's factors, not fitted again) and chooses the
   strategy on validation;
3. then (after the refits too) :func:`ranker_test_window` (the ranker scored once on the test window)
   and :func:`ranker_serving_fit` (its generators refitted on all the data, only when the ranker is
   registered) run in parallel.

Each writes its part into the DAG run's staging folder (:mod:`recomart.model.round_parts`);
``register`` assembles the stage from them (:func:`recomart.model.round_parts.load_ranker_stage`) with
the same result as :func:`recomart.model.ranker_stage.fit_ranker_stage` in one process.
"""

from __future__ import annotations

from typing import Any

from recomart.config import Settings
from recomart.features.names import FEATURE_SERVICE
from recomart.model.component_search import CANDIDATES
from recomart.model.config import TrainingConfig
from recomart.model.ranker_stage import (
    GeneratorChoice,
    fit_and_choose,
    score_ranker_on_test,
    serve_ranker,
    tune_generator,
)
from recomart.model.round_parts import (
    load_blend,
    load_fitted_ranker,
    load_generator_choices,
    save_fitted_ranker,
    save_generator_choice,
    save_ranker_test,
    save_served_ranker,
)
from recomart.model.staging import read_catalogue, read_parts
from recomart.model.train import ranker_options, train_part_blend
from recomart.tasks.common import store_features_at
from recomart.tasks.train_round import open_round, remember_refits, remember_train_fit, staged_round

RANKER_GENERATORS = tuple(CANDIDATES)
"""The generators tuned on validation by a task each (``ease``, ``rp3beta``)."""


def tune_ranker_generator(s: Settings, specs: list[dict[str, Any]], name: str, *, airflow_run_id: str) -> dict:
    """Choose generator ``name``'s parameters on the staged split; returns ``{"name", "params", "seconds",
    "skipped"}`` (``skipped``: why not, e.g. the ranker is off)."""
    if name not in CANDIDATES:
        raise ValueError(f"unknown ranker generator {name!r}: expected one of {RANKER_GENERATORS}")
    config = TrainingConfig.from_settings(s)
    folder, staged = staged_round(specs, config, airflow_run_id)
    if config.ranker == "off":
        choice = GeneratorChoice(name, None, 0.0, "the learned ranker is off (RECOMART_TRAIN_RANKER)")
    else:
        train, valid = read_parts(folder)
        choice = tune_generator(name, train, valid, read_catalogue(folder, staged), config.k)
    save_generator_choice(folder, choice)
    return {"name": choice.name, "params": choice.params, "seconds": choice.seconds, "skipped": choice.skipped}


def fit_ranker(s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str) -> dict:
    """Fit the ranker on the train part with the tuned generators and choose the strategy on validation
    (nothing when ``RECOMART_TRAIN_RANKER`` is ``off``); returns ``{"strategy", "timings"}``."""
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    config = setup.config
    if config.ranker == "off":
        save_fitted_ranker(folder, None)
        return {"strategy": None, "timings": {}}
    blend, _ = load_blend(folder)
    remember_train_fit(setup)
    fitted = fit_and_choose(
        setup.split,
        train_part_blend(setup.split, setup.tuned, blend, setup.catalogue, config),
        setup.catalogue,
        load_generator_choices(folder, RANKER_GENERATORS),
        ranker_options(config, setup.tuned, store_features_at(s), FEATURE_SERVICE),
    )
    save_fitted_ranker(folder, fitted)
    return {"strategy": fitted.strategy, "timings": fitted.timings}


def ranker_test_window(
    s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str
) -> dict:
    """Score the fitted ranker once on the test window (its generators on train + validation); returns
    ``{"metrics", "timings"}`` (empty when no ranker was fitted)."""
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    fitted = load_fitted_ranker(folder)
    if fitted is None or fitted.ranker is None:
        return {"metrics": {}, "timings": {}}
    remember_refits(folder, setup, ("train_valid",))
    tested = score_ranker_on_test(fitted.ranker, setup.split, setup.catalogue, store_features_at(s), setup.config.k)
    save_ranker_test(folder, tested)
    return {"metrics": tested.metrics, "timings": tested.timings}


def ranker_serving_fit(
    s: Settings, specs: list[dict[str, Any]], choice: dict[str, Any], *, airflow_run_id: str
) -> dict:
    """Refit the ranker's generators on all the data for serving, when the ranker is what is registered;
    returns ``{"seconds"}`` or ``{"skipped"}``."""
    folder, _, setup = open_round(s, specs, choice, airflow_run_id)
    fitted = load_fitted_ranker(folder)
    if fitted is None or fitted.ranker is None or fitted.strategy != "ranker":
        return {"skipped": "the ranker is not what is registered"}
    remember_refits(folder, setup, ("all",))
    served = serve_ranker(fitted.ranker, setup.data, setup.catalogue)
    save_served_ranker(folder, served)
    return {"seconds": served[1]}
