"""The learned ranker (:class:`recomart.ranking.ranker.LearnedRanker`) fitted on a validation window.

:func:`ranker_scorer` is the offline scorer of ``benchmarks/accuracy.py``: on ``validation(train)``
(fit part, validation pairs) it chooses EASE's λ and RP3β's ``α`` / ``β``
(:func:`recomart.model.component_search.choose_fitted`), fits every generator on the fit part and the
LambdaRank model on the validation labels; then it refits the generators on all of ``train`` and
ranks the test users with the learned model.  Nothing is chosen on the test window.

The candidates per generator ``N`` are chosen on the same validation window
(:func:`choose_n_candidates`): the validation users are split in two seeded halves, a ranker with each
``N`` of :data:`N_CANDIDATES_GRID` learns on the labels of one half and ranks the other half, whose
nDCG@k (every held user counts, also those without a labelled candidate) picks ``N``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recomart.model.catalogue import Catalogue
from recomart.model.component_search import CANDIDATES, Scorer, Splitter, choose_fitted, validation_ndcg
from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.buy_again import BuyAgain
from recomart.ranking.content import Content
from recomart.ranking.history import ExcludePolicy, UserHistory
from recomart.ranking.item_item import ItemItem
from recomart.ranking.popularity import Popularity
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.svd import BiasedSVD, SVDSettings

#: candidates per generator when none is chosen on validation (the train DAG's default)
RANKER_CANDIDATES = 100
#: candidates per generator tried on validation by :func:`choose_n_candidates`
N_CANDIDATES_GRID: tuple[int, ...] = (50, 100, 200)
#: share of the validation users whose labels teach the ranker during the choice of ``N``
N_CHOICE_FIT_SHARE = 0.5
#: LightGBM threads (the reference machine has 2 cores)
RANKER_THREADS = 2


def ranker_generators(
    catalogue: Catalogue, svd: SVDSettings | None, chosen: Mapping[str, Recommender]
) -> dict[str, Recommender]:
    """Unfitted candidate generators of one feed: the SVD (with ``svd``; none when ``None``), the
    ``chosen`` components (e.g. tuned EASE and RP3β), item-to-item, content (with products),
    popularity (all time and last 30 days) and buy-again (repeat-purchase feeds)."""
    generators: dict[str, Recommender] = {} if svd is None else {"svd": BiasedSVD(svd)}
    generators.update(chosen)
    generators["item_item"] = ItemItem()
    if catalogue.products is not None:
        generators["content"] = Content()
    generators["popularity"] = Popularity()
    generators["popularity_recent"] = Popularity(prior_days=30)
    if catalogue.repeat_purchases:
        generators["buy_again"] = BuyAgain()
    return generators


def split_label_users(
    labels: pd.DataFrame, *, fit_share: float = N_CHOICE_FIT_SHARE, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit labels, held labels): the ``user_id, item_id`` rows of ``labels`` split by user, a seeded
    ``fit_share`` of the (sorted) users to the first part; no user is in both."""
    users = np.sort(pd.unique(labels["user_id"].astype(str).to_numpy()))
    to_fit = users[np.random.default_rng(seed).random(len(users)) < fit_share]
    mask = labels["user_id"].astype(str).isin(to_fit).to_numpy()
    return labels[mask], labels[~mask]


def choose_n_candidates(
    generators: Callable[[], Mapping[str, Recommender]],
    training: TrainingSet,
    labels: pd.DataFrame,
    *,
    grid: Sequence[int] = N_CANDIDATES_GRID,
    exclude_seen: bool = True,
    k: int = 10,
    seed: int = 42,
) -> dict[str, Any]:
    """The candidates per generator with the best held-out validation nDCG@k (the smaller on ties).

    ``generators()`` builds fresh unfitted generators; ``training`` is the fit part before the
    validation window and ``labels`` (``user_id, item_id``) the window's pairs.  For each ``N`` of
    ``grid`` a ranker learns on the labels of half the validation users (:func:`split_label_users`) and
    ranks the other half.  Returns ``{"n_candidates", "validation_ndcg_at_<k>", "n_fit_label_users",
    "n_held_users", "trials": [{n_candidates, ndcg_at_<k>, candidate_recall, n_candidate_rows,
    best_iteration, seconds}]}``."""
    if not grid:
        raise ValueError("no candidate count to choose from")
    fit_labels, held_labels = split_label_users(labels, seed=seed)
    policy: ExcludePolicy = "interacted" if exclude_seen else "none"
    trials: list[dict[str, Any]] = []
    held_users = 0
    for n in sorted(int(n) for n in grid):
        started = time.perf_counter()
        ranker = LearnedRanker(generators(), n_candidates=n, exclude=policy, seed=seed, num_threads=RANKER_THREADS)
        ranker.fit_ranker(training, fit_labels)
        value, held_users = validation_ndcg(ranker, training, held_labels, k=k, exclude_seen=exclude_seen)
        evidence = ranker.evidence
        trials.append(
            {
                "n_candidates": n,
                f"ndcg_at_{k}": value,
                "candidate_recall": evidence["candidate_recall"],
                "n_candidate_rows": evidence["n_candidate_rows"],
                "best_iteration": evidence["best_iteration"],
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    best = max(trials, key=lambda trial: (trial[f"ndcg_at_{k}"], -trial["n_candidates"]))
    return {
        "n_candidates": best["n_candidates"],
        f"validation_ndcg_at_{k}": best[f"ndcg_at_{k}"],
        "n_fit_label_users": int(fit_labels["user_id"].nunique()),
        "n_held_users": held_users,
        "trials": trials,
    }


def ranker_scorer(
    catalogue: Catalogue,
    *,
    validation: Splitter,
    svd: SVDSettings | None,
    k: int = 10,
    exclude_seen: bool = True,
    seed: int = 42,
    record: dict[str, Any] | None = None,
    n_grid: Sequence[int] = N_CANDIDATES_GRID,
) -> Scorer:
    """A scorer ``fn(train, users) -> object[len(users), k]`` of the ranker fitted on ``validation(train)``
    (see the module docstring) with the candidates per generator chosen there among ``n_grid``; the
    evidence (chosen generator parameters and ``N``, candidate recall, early stopping, feature importances
    by gain) goes to ``record``."""
    policy: ExcludePolicy = "interacted" if exclude_seen else "none"

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        fit_part, valid_part = validation(train)
        chosen: dict[str, Recommender] = {}
        evidence: dict[str, Any] = {}
        for name, (build, grid) in CANDIDATES.items():
            picked, _ = choose_fitted(build, grid, fit_part, valid_part, catalogue, k=k, exclude_seen=exclude_seen)
            chosen[name] = build(picked["params"])
            evidence[f"{name}_params"] = picked["params"]
        fit_training = catalogue.evaluation_set(fit_part)
        choice = choose_n_candidates(
            lambda: ranker_generators(catalogue, svd, _rebuilt(chosen, evidence)),
            fit_training,
            valid_part,
            grid=n_grid,
            exclude_seen=exclude_seen,
            k=k,
            seed=seed,
        )
        ranker = LearnedRanker(
            ranker_generators(catalogue, svd, chosen),
            n_candidates=choice["n_candidates"],
            exclude=policy,
            seed=seed,
            num_threads=RANKER_THREADS,
        )
        ranker.fit_ranker(fit_training, valid_part)
        training = catalogue.evaluation_set(train)
        ranker.fit(training)
        aligned = UserHistory.align(training.history, users, training.item_ids)
        ids = ranker.recommend_aligned(aligned, k, policy).item_ids
        if record is not None:
            record.update(
                evidence,
                generators=list(ranker.generators),
                n_candidates=choice["n_candidates"],
                n_candidates_choice=choice,
                params={key: value for key, value in ranker.params.items() if key != "verbose"},
                **ranker.evidence,
                feature_importances=ranker.feature_importances(),
            )
        return ids

    return score


def _rebuilt(chosen: Mapping[str, Recommender], evidence: Mapping[str, Any]) -> dict[str, Recommender]:
    """Fresh unfitted copies of the ``chosen`` components, built from their ``<name>_params`` evidence."""
    return {name: CANDIDATES[name][0](evidence[f"{name}_params"]) for name in chosen}
