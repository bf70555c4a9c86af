"""Bounded hyper-parameter search: a few seeded points of a small grid, under a wall-clock budget.

The search only ever sees the validation part of a split; the caller scores the test part once,
for the chosen parameters, afterwards.  :func:`tune_svd` is the SVD search of a training round
(grid and budget from :class:`recomart.model.config.TrainingConfig`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recomart.model.config import TrainingConfig
from recomart.model.evaluate import better, evaluate_models
from recomart.ranking.factors import FactorModel
from recomart.ranking.svd import fit_biased_svd

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One evaluated point of the search: its parameters, validation metrics and duration."""

    index: int
    params: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


@dataclass
class TuningResult:
    """The best parameters on validation and every trial in the order it ran."""

    best_params: dict[str, Any]
    best_value: float
    metric: str
    trials: list[Trial] = field(default_factory=list)
    stopped_by_budget: bool = False


def candidate_params(
    space: Mapping[str, Sequence[Any]],
    n_trials: int,
    seed: int,
    base: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``base`` first (if given), then distinct seeded random points of the grid ``space``.

    With ``n_trials`` at least the grid size, every grid point is returned (a full grid search).
    """
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[key] for key in keys))]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(grid))
    out: list[dict[str, Any]] = []
    if base is not None:
        out.append(dict(base))
    for idx in order:
        if len(out) >= n_trials:
            break
        point = {**(base or {}), **grid[idx]}
        if point not in out:
            out.append(point)
    return out[: max(n_trials, 1)]


def tune(
    evaluate: Callable[[dict[str, Any]], dict[str, float]],
    candidates: Sequence[dict[str, Any]],
    *,
    metric: str,
    budget_s: float,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Evaluate ``candidates`` in order until the budget is spent (the first one always runs).

    ``evaluate(params)`` returns validation metrics; the best on ``metric`` (direction-aware, see
    :func:`recomart.model.evaluate.better`) wins, the earlier trial on ties.
    """
    if not candidates:
        raise ValueError("no candidate parameters to try")
    start = time.perf_counter()
    trials: list[Trial] = []
    stopped = False
    for index, params in enumerate(candidates):
        if trials and time.perf_counter() - start >= budget_s:
            stopped = True
            break
        trial_started = time.perf_counter()
        metrics = evaluate(dict(params))
        trial = Trial(index, dict(params), dict(metrics), time.perf_counter() - trial_started)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        log.info("trial %d %s: %s=%.4f (%.1fs)", index, params, metric, metrics[metric], trial.seconds)
    best = best_trial(trials, metric)
    return TuningResult(best.params, float(best.metrics[metric]), metric, trials, stopped)


def best_trial(trials: Sequence[Trial], metric: str) -> Trial:
    """The best of ``trials`` on ``metric`` (direction-aware, see :func:`recomart.model.evaluate.better`):
    going up the indexes, a trial replaces the best so far only when strictly better, so a tie goes to
    the lowest index and the choice is the same whatever order the trials ran or finished in."""
    if not trials:
        raise ValueError("no trial to choose from")
    ordered = sorted(trials, key=lambda trial: trial.index)
    best = ordered[0]
    for trial in ordered[1:]:
        if better(metric, trial.metrics[metric], best.metrics[metric]):
            best = trial
    return best


@dataclass(frozen=True)
class TunedSVD:
    """The chosen SVD parameters, every trial (``index, params, metrics, seconds``), the chosen
    parameters' SVD fitted on the training part (``None`` when no search ran) and the number of sampled
    negatives that fit added (``train_negatives``)."""

    params: dict[str, Any]
    trials: list[dict[str, Any]]
    train_model: FactorModel | None
    train_negatives: int = 0


def svd_candidates(config: TrainingConfig) -> list[dict[str, Any]]:
    """The configuration's base parameters, then seeded points of its search space."""
    return candidate_params(config.search_space, config.max_trials, config.seed, config.svd_params)


def searches(valid: pd.DataFrame, candidates: Sequence[dict[str, Any]]) -> bool:
    """Whether a round searches the SVD parameters: it needs a validation window and two candidates."""
    return not valid.empty and len(candidates) > 1


def svd_trial(
    train: pd.DataFrame, valid: pd.DataFrame, config: TrainingConfig, params: dict[str, Any], *, exclude_seen: bool
) -> tuple[tuple[FactorModel, int], dict[str, float]]:
    """One trial of the SVD search: the candidate ``params`` fitted on ``train`` (the factors and the
    number of negatives the fit added, as :func:`~recomart.ranking.svd.fit_biased_svd` returns them) and
    its validation metrics on ``valid`` (the model's, plus popularity's as ``popularity_<metric>``).
    Raises ``ValueError`` when the validation part has no warm user."""
    fitted = fit_biased_svd(train, config.svd_settings(params))
    model = fitted[0]
    evaluation = evaluate_models(
        train, valid, {"model": model}, k=config.k, exclude_seen=exclude_seen, block_size=config.block_size
    )
    popularity = {f"popularity_{key}": value for key, value in evaluation["metrics"]["popularity"].items()}
    return fitted, {**evaluation["metrics"]["model"], **popularity}


def trial_records(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """``TunedSVD.trials``: one ``{"index", "params", "metrics", "seconds"}`` per trial, in index order."""
    return [
        {"index": t.index, "params": t.params, "metrics": t.metrics, "seconds": t.seconds}
        for t in sorted(trials, key=lambda trial: trial.index)
    ]


def tune_svd(train: pd.DataFrame, valid: pd.DataFrame, config: TrainingConfig, *, exclude_seen: bool) -> TunedSVD:
    """Search the SVD parameters on ``valid`` (each candidate fitted on ``train`` by :func:`svd_trial`,
    scored on ``config.effective_tuning_metric``); the base parameters when there is no validation
    window, a single candidate, or no warm validation user.  The train DAG runs the same trials as
    mapped tasks (:mod:`recomart.model.trials`)."""
    candidates = svd_candidates(config)
    base = dict(config.svd_params)
    if not searches(valid, candidates):
        return TunedSVD(base, [], None)
    fitted: dict[str, tuple[FactorModel, int]] = {}

    def evaluate_params(params: dict[str, Any]) -> dict[str, float]:
        fit, metrics = svd_trial(train, valid, config, params, exclude_seen=exclude_seen)
        fitted[repr(sorted(params.items()))] = fit
        return metrics

    try:
        tuned = tune(
            evaluate_params, candidates, metric=config.effective_tuning_metric, budget_s=config.tuning_budget_s
        )
    except ValueError as exc:  # validation part without a warm user: keep the base parameters
        log.warning("tuning skipped: %s", exc)
        return TunedSVD(base, [], None)
    model, negatives = fitted.get(repr(sorted(tuned.best_params.items())), (None, 0))
    return TunedSVD(tuned.best_params, trial_records(tuned.trials), model, negatives)
