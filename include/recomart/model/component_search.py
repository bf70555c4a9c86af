"""Hyper-parameters of one ranking component chosen on a validation window (nDCG@k), never the test window.

Used for the candidate generators that are not (yet) part of the blend: EASE's L2 weight λ and RP3β's
``α`` / ``β`` (:data:`EASE_GRID`, :data:`RP3BETA_GRID`).  Each grid point is fitted on the fit part of
a split (:meth:`recomart.model.catalogue.Catalogue.evaluation_set`) and ranks the validation users (fit
users with at least one validation item left after the exclusion policy); the best point on
validation nDCG@k is refitted on the whole training part by the caller (:func:`tuned_component_scorer`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.model.blend_search import relevant_matrix
from recomart.model.catalogue import Catalogue
from recomart.model.tuning import tune
from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.ease import EASE
from recomart.ranking.history import ExcludePolicy, UserHistory
from recomart.ranking.metrics import ndcg_at_k
from recomart.ranking.rp3beta import RP3Beta

Scorer = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
Splitter = Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]
Builder = Callable[[Mapping[str, Any]], Recommender]

#: validation users one nDCG@k is measured on at most (a seeded sample beyond it, the same one for every
#: contender): each is ranked against the whole catalogue, so more users cost users × items per grid point
VALIDATION_MAX_USERS = 5_000
#: EASE's L2 weight λ, searched on validation
EASE_GRID: tuple[dict[str, Any], ...] = tuple({"l2": l2} for l2 in (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0))
#: RP3β's walk exponent α and popularity penalty β, searched on validation (100 neighbours per item)
RP3BETA_GRID: tuple[dict[str, Any], ...] = tuple(
    {"alpha": alpha, "beta": beta} for alpha in (0.25, 0.5, 0.75, 1.0) for beta in (0.0, 0.25, 0.5, 0.75)
)


def fit_of(component: Recommender) -> tuple[str, dict[str, np.ndarray]] | None:
    """``(fit key, state arrays)`` of a fitted tuned generator (:class:`EASE`, :class:`RP3Beta`; None for a
    component that keeps no fit key)."""
    key = getattr(component, "fit_key", None)
    return None if key is None else (key, component.state()[0])


def remember_fit(name: str, fit_key: str, arrays: dict[str, np.ndarray]) -> None:
    """Keep tuned generator ``name``'s fit (:func:`fit_of`, made by another process) as this process's fit
    of ``fit_key``: fitting the same part with the same settings is then a lookup."""
    remember: dict[str, Callable[[str, dict[str, np.ndarray]], None]] = {
        "ease": EASE.remember,
        "rp3beta": RP3Beta.remember,
    }
    remember[name](fit_key, arrays)


class RP3BetaBuilder:
    """The RP3β :data:`Builder` (``{"alpha", "beta"}`` → an unfitted :class:`RP3Beta`), which can also fit
    a whole grid at once (:meth:`fit_grid`, used by :func:`choose_fitted`)."""

    def __call__(self, params: Mapping[str, Any]) -> Recommender:
        return RP3Beta(alpha=params["alpha"], beta=params["beta"])

    def fit_grid(self, training: TrainingSet, grid: Sequence[Mapping[str, Any]]) -> Iterator[Recommender]:
        """Each grid point fitted on ``training``, in grid order; consecutive points of one ``α`` share
        the walk (:meth:`RP3Beta.fitted_for_betas`), so their first trial carries the shared work."""
        for alpha, points in itertools.groupby(grid, key=lambda params: params["alpha"]):
            yield from RP3Beta.fitted_for_betas(training, alpha=alpha, betas=[params["beta"] for params in points])


#: the components :func:`candidate_scorers` builds, with their builder and grid
CANDIDATES: dict[str, tuple[Builder, Sequence[dict[str, Any]]]] = {
    "ease": (lambda p: EASE(l2=p["l2"]), EASE_GRID),
    "rp3beta": (RP3BetaBuilder(), RP3BETA_GRID),
}


def _policy(exclude_seen: bool) -> ExcludePolicy:
    return "interacted" if exclude_seen else "none"


@dataclass(frozen=True)
class ValidationUsers:
    """The users one validation nDCG@k is measured on (:func:`validation_users`): their ``rows`` in the
    training set's users, their ``relevant`` validation items (CSR over its catalogue), their training
    history ``aligned`` on the catalogue and the exclusion ``policy``."""

    rows: np.ndarray
    relevant: sparse.csr_matrix
    aligned: UserHistory
    policy: ExcludePolicy


def validation_users(
    training: TrainingSet,
    valid: pd.DataFrame,
    *,
    exclude_seen: bool,
    max_users: int = VALIDATION_MAX_USERS,
    seed: int = 42,
) -> ValidationUsers:
    """Users: those of ``training`` with at least one validation item (``valid``: ``user_id, item_id``)
    of its catalogue, after removing their training items when ``exclude_seen`` (which also filters
    them from the ranking); a sample of ``max_users`` of them (``seed``: the same users for every
    component) when there are more."""
    entries = training.entries
    policy = _policy(exclude_seen)
    relevant = relevant_matrix(entries, valid, entries.exclusion(policy))
    rows = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if len(rows) == 0:
        raise ValueError("no validation user with a relevant item in the fit part")
    if len(rows) > max_users:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_users, replace=False))
    aligned = UserHistory.align(training.history, entries.user_ids[rows], training.item_ids)
    return ValidationUsers(rows, relevant[rows], aligned, policy)


def users_ndcg(component: Recommender, users: ValidationUsers, k: int) -> float:
    """nDCG@k of the fitted ``component`` ranking ``users``."""
    ids = component.recommend_aligned(users.aligned, k, users.policy).item_ids
    codes = component.item_rows(np.where(pd.isna(ids), "", ids).ravel()).reshape(ids.shape)  # padding: -1
    return ndcg_at_k(codes, users.relevant, k)


def validation_ndcg(
    component: Recommender,
    training: TrainingSet,
    valid: pd.DataFrame,
    *,
    k: int,
    exclude_seen: bool,
    max_users: int = VALIDATION_MAX_USERS,
    seed: int = 42,
) -> tuple[float, int]:
    """(nDCG@k, users) of the fitted ``component`` on the ``valid`` pairs (users: :func:`validation_users`)."""
    users = validation_users(training, valid, exclude_seen=exclude_seen, max_users=max_users, seed=seed)
    return users_ndcg(component, users, k), len(users.rows)


def choose_fitted(
    build: Builder,
    grid: Sequence[dict[str, Any]],
    fit_part: pd.DataFrame,
    valid_part: pd.DataFrame,
    catalogue: Catalogue,
    *,
    k: int = 10,
    exclude_seen: bool = True,
) -> tuple[dict[str, Any], Recommender]:
    """The grid point with the best validation nDCG@k (the earlier on ties): ``(record, component)``, the
    record ``{"params", "validation_ndcg_at_10", "n_validation_users", "n_fit_pairs", "n_validation_pairs",
    "trials": [{params, ndcg, seconds}]}`` and the chosen point's component as fitted on ``fit_part``.

    Every point ranks the same :func:`validation_users`, chosen once; a ``build`` with a ``fit_grid``
    (:class:`RP3BetaBuilder`) fits the points in grid order sharing its work, which then counts in the
    seconds of the first trial that needed it.  Only the best fit so far is held."""
    training = catalogue.evaluation_set(fit_part)
    users = validation_users(training, valid_part, exclude_seen=exclude_seen)
    fit_grid = getattr(build, "fit_grid", None)
    fitted = fit_grid(training, grid) if fit_grid is not None else (build(params).fit(training) for params in grid)
    best: dict[str, Any] = {}

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        component = next(fitted)
        value = users_ndcg(component, users, k)
        if not best or value > best["value"]:  # strictly better: the earlier point keeps a tie, as tune's
            best.update(value=value, component=component)
        return {f"ndcg_at_{k}": value}

    tuned = tune(evaluate, list(grid), metric=f"ndcg_at_{k}", budget_s=float("inf"))
    record = {
        "params": tuned.best_params,
        f"validation_ndcg_at_{k}": tuned.best_value,
        "n_validation_users": len(users.rows),
        "n_fit_pairs": len(fit_part),
        "n_validation_pairs": len(valid_part),
        "trials": [{"params": t.params, **t.metrics, "seconds": round(t.seconds, 2)} for t in tuned.trials],
    }
    return record, best["component"]


def tuned_component_scorer(
    build: Builder,
    grid: Sequence[dict[str, Any]],
    catalogue: Catalogue,
    *,
    validation: Splitter,
    k: int = 10,
    exclude_seen: bool = True,
    record: dict[str, Any] | None = None,
) -> Scorer:
    """A scorer ``fn(train, users) -> object[len(users), k]``: the component with the parameters
    chosen on ``validation(train)`` (:func:`choose_fitted`, evidence to ``record``), refitted on all of
    ``train``, ranks ``users`` (their training items filtered when ``exclude_seen``)."""

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        fit_part, valid_part = validation(train)
        chosen, _ = choose_fitted(build, grid, fit_part, valid_part, catalogue, k=k, exclude_seen=exclude_seen)
        if record is not None:
            record.update(chosen)
        training = catalogue.evaluation_set(train)
        component = build(chosen["params"]).fit(training)
        aligned = UserHistory.align(training.history, users, training.item_ids)
        return component.recommend_aligned(aligned, k, _policy(exclude_seen)).item_ids

    return score


def candidate_scorers(
    catalogue: Catalogue,
    *,
    validation: Splitter,
    k: int = 10,
    exclude_seen: bool = True,
    record: dict[str, Any] | None = None,
) -> dict[str, Scorer]:
    """``{"ease", "rp3beta"}`` scorers, each tuned on ``validation``; ``record[name]`` gets each fit's evidence."""
    scorers: dict[str, Scorer] = {}
    for name, (build, grid) in CANDIDATES.items():
        own = None if record is None else record.setdefault(name, {})
        scorers[name] = tuned_component_scorer(
            build, grid, catalogue, validation=validation, k=k, exclude_seen=exclude_seen, record=own
        )
    return scorers
