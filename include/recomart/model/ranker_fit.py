"""The learned ranker (:class:`recomart.ranking.ranker.LearnedRanker`) fitted on a validation window.

:func:`ranker_scorer` is the offline scorer of ``benchmarks/accuracy.py``: on ``validation(train)``
(fit part, validation pairs) it chooses EASE's λ and RP3β's ``α`` / ``β``
(:func:`recomart.model.component_search.choose_params`), fits every generator on the fit part and the
LambdaRank model on the validation labels; then it refits the generators on all of ``train`` and
ranks the test users with the learned model.  Nothing is chosen on the test window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from recomart.model.catalogue import Catalogue
from recomart.model.component_search import CANDIDATES, Scorer, Splitter, choose_params
from recomart.ranking.base import Recommender
from recomart.ranking.buy_again import BuyAgain
from recomart.ranking.content import Content
from recomart.ranking.history import ExcludePolicy, UserHistory
from recomart.ranking.item_item import ItemItem
from recomart.ranking.popularity import Popularity
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.svd import BiasedSVD, SVDSettings

#: candidates per generator (fixed, not searched)
RANKER_CANDIDATES = 100
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


def ranker_scorer(
    catalogue: Catalogue,
    *,
    validation: Splitter,
    svd: SVDSettings | None,
    k: int = 10,
    exclude_seen: bool = True,
    seed: int = 42,
    record: dict[str, Any] | None = None,
) -> Scorer:
    """A scorer ``fn(train, users) -> object[len(users), k]`` of the ranker fitted on ``validation(train)``
    (see the module docstring); the evidence (chosen generator parameters, candidate recall, early
    stopping, feature importances by gain) goes to ``record``."""
    policy: ExcludePolicy = "interacted" if exclude_seen else "none"

    def score(train: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        fit_part, valid_part = validation(train)
        chosen: dict[str, Recommender] = {}
        evidence: dict[str, Any] = {}
        for name, (build, grid) in CANDIDATES.items():
            picked = choose_params(build, grid, fit_part, valid_part, catalogue, k=k, exclude_seen=exclude_seen)
            chosen[name] = build(picked["params"])
            evidence[f"{name}_params"] = picked["params"]
        ranker = LearnedRanker(
            ranker_generators(catalogue, svd, chosen),
            n_candidates=RANKER_CANDIDATES,
            exclude=policy,
            seed=seed,
            num_threads=RANKER_THREADS,
        )
        ranker.fit_ranker(catalogue.evaluation_set(fit_part), valid_part)
        training = catalogue.evaluation_set(train)
        ranker.fit(training)
        aligned = UserHistory.align(training.history, users, training.item_ids)
        ids = ranker.recommend_aligned(aligned, k, policy).item_ids
        if record is not None:
            record.update(
                evidence,
                generators=list(ranker.generators),
                n_candidates=RANKER_CANDIDATES,
                params={key: value for key, value in ranker.params.items() if key != "verbose"},
                **ranker.evidence,
                feature_importances=ranker.feature_importances(),
            )
        return ids

    return score
