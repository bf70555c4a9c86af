"""The learned ranker: LightGBM LambdaRank over the candidates of several generators.

Two stages (:mod:`recomart.ranking.ranker_features` builds the candidates and their features):

1. the candidate generators (any :class:`~recomart.ranking.base.Recommender`: SVD, EASE, RP3β,
   item-to-item, content, popularity, buy-again) are fitted on the history before a cutoff and each
   proposes its top ``n_candidates`` per user;
2. a LambdaRank model orders the union by the features of each (user, item) pair.

**Protocol** (:meth:`LearnedRanker.fit_ranker`): generators fitted on a fit part (before the
validation cutoff), labels = the pairs of the validation window (1 if the user interacted with the
item in the window, else 0).  Users without a labelled candidate carry no ranking signal and are left
out; a seeded share of the remaining users (``valid_share``, at least one user and never all of them) is
held out for early stopping, so every choice is made on the validation window.  For the test window,
:meth:`LearnedRanker.fit` refits the generators on the whole training part and keeps the learned model.

:meth:`LearnedRanker.score` returns the model's score on the candidates and ``-inf`` elsewhere, so
:meth:`~recomart.ranking.base.Recommender.recommend_aligned` ranks as any component does.  LightGBM
runs with ``num_threads`` set explicitly and ``deterministic=True``: one seed gives one model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.buy_again import BuyAgain
from recomart.ranking.content import Content
from recomart.ranking.ease import EASE
from recomart.ranking.history import ExcludePolicy, UserHistory, pair_matrix
from recomart.ranking.item_item import ItemItem
from recomart.ranking.popularity import Popularity
from recomart.ranking.ranker_features import (
    CandidateBlock,
    ItemStats,
    candidate_block,
    frame_columns,
    history_before,
    history_features,
)
from recomart.ranking.rp3beta import RP3Beta
from recomart.ranking.svd import BiasedSVD

log = logging.getLogger(__name__)

#: the generator classes a stored ranker can hold, by class name
GENERATOR_CLASSES: dict[str, Any] = {
    cls.__name__: cls for cls in (BiasedSVD, EASE, RP3Beta, ItemItem, Content, Popularity, BuyAgain)
}

#: LightGBM settings of the ranker (``num_threads`` and the seed are set by :class:`LearnedRanker`)
RANKER_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "n_estimators": 400,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "lambdarank_truncation_level": 20,
    "verbose": -1,
}
#: label users LambdaRank learns from at most (a seeded sample beyond it): the fit's cost grows with its
#: candidate rows (~300 per user), and a few thousand queries teach the ~25 features as well as more do
MAX_LABEL_USERS = 5_000


@dataclass(frozen=True)
class RankerRows:
    """Candidate pairs with their features: ``rows`` / ``cols`` (int64[m], history rows sorted,
    catalogue columns) and ``x`` (float32[m, n_features], columns ``names``)."""

    rows: np.ndarray
    cols: np.ndarray
    x: np.ndarray
    names: list[str]


class LearnedRanker(Recommender):
    """LambdaRank over ``generators`` (name → unfitted component) with ``n_candidates`` per generator.

    ``exclude``: the feed's exclusion policy for candidates; ``user_features`` / ``item_features``:
    optional numeric frames indexed by ``user_id`` / ``item_id`` (set them again before ranking a later
    cutoff); ``params``: overrides of :data:`RANKER_PARAMS`; ``max_label_users``: the users
    :meth:`fit_ranker` learns from at most (:data:`MAX_LABEL_USERS`).
    """

    def __init__(
        self,
        generators: Mapping[str, Recommender],
        *,
        n_candidates: int = 100,
        exclude: ExcludePolicy = "interacted",
        params: Mapping[str, Any] | None = None,
        seed: int = 42,
        num_threads: int = 2,
        valid_share: float = 0.2,
        early_stopping_rounds: int = 50,
        max_label_users: int = MAX_LABEL_USERS,
    ) -> None:
        self.generators = dict(generators)
        self.n_candidates = int(n_candidates)
        self.exclude: ExcludePolicy = exclude
        self.params = {**RANKER_PARAMS, **(params or {})}
        self.seed = int(seed)
        self.num_threads = int(num_threads)
        self.valid_share = float(valid_share)
        self.early_stopping_rounds = int(early_stopping_rounds)
        self.max_label_users = int(max_label_users)
        self.user_features: pd.DataFrame | None = None
        self.item_features: pd.DataFrame | None = None
        #: the feature-store service the user and item features were read through (None: none read)
        self.feature_service: str | None = None
        self.item_ids = np.zeros(0, dtype=object)
        self.stats: ItemStats | None = None
        self.booster: Any = None
        self.feature_names: list[str] = []
        self.evidence: dict[str, Any] = {}

    def fit(self, training: TrainingSet) -> LearnedRanker:
        """Fits the generators and the item statistics on ``training`` (keeps a learned model)."""
        self.item_ids = training.item_ids
        for generator in self.generators.values():
            generator.fit(training)
        self.stats = ItemStats.from_training(training)
        return self

    def rows_for(self, history: UserHistory, rows: np.ndarray, *, block_size: int = 1024) -> RankerRows:
        """Candidates and features of the users ``history.user_ids[rows]`` (``rows`` sorted, fitted
        generators), ``block_size`` users at a time (each generator's dense scores are one block)."""
        if self.stats is None:
            raise ValueError("the ranker is not fitted")
        parts = [self._block_rows(history, rows[s : s + block_size]) for s in range(0, len(rows), block_size)]
        if not parts:
            parts = [self._block_rows(history, rows)]
        return RankerRows(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.x for p in parts]),
            parts[0].names,
        )

    def _block_rows(self, history: UserHistory, rows: np.ndarray) -> RankerRows:
        assert self.stats is not None
        block: CandidateBlock = candidate_block(self.generators, history, rows, self.n_candidates, self.exclude)
        features = {
            **block.features,
            **history_features(history, block.rows, block.cols, self.stats),
            **frame_columns(self.user_features, history.user_ids[block.rows], "user_"),
            **frame_columns(self.item_features, history.item_ids[block.cols], "item_"),
        }
        names = list(features)
        x = np.column_stack([features[name] for name in names]) if names else np.zeros((len(block.rows), 0))
        return RankerRows(block.rows, block.cols, np.asarray(x, dtype=np.float32), names)

    def rows_at(
        self, history: pd.DataFrame, user_ids: np.ndarray, cutoff: pd.Timestamp | None = None
    ) -> tuple[UserHistory, RankerRows]:
        """(aligned history, candidates and features) of ``user_ids`` from the pairs of ``history``
        (the :mod:`~recomart.ranking.history` contract) before ``cutoff`` only (all when ``None``)."""
        aligned = UserHistory.align(history_before(history, cutoff), user_ids, self.item_ids)
        return aligned, self.rows_for(aligned, np.arange(aligned.n_users, dtype=np.int64))

    def fit_ranker(
        self, training: TrainingSet, labels: pd.DataFrame, *, cutoff: pd.Timestamp | None = None
    ) -> LearnedRanker:
        """Fits the generators on ``training`` and the LambdaRank model on the candidates of the users of
        ``labels`` (``user_id, item_id``: the window after the cutoff of ``training``; a seeded sample of
        ``max_label_users`` of its users when it has more); features use the history before ``cutoff``
        only (``None``: all of ``training``'s history)."""
        import lightgbm as lgb

        self.fit(training)
        users = pd.unique(labels["user_id"].astype(str).to_numpy())
        known = users[pd.Index(training.entries.user_ids).get_indexer(pd.Index(users)) >= 0]
        users = self._label_sample(known)
        history, data = self.rows_at(training.history, users, cutoff)
        label_cols = pd.Index(training.item_ids).get_indexer(pd.Index(labels["item_id"].astype(str)))
        label_rows = pd.Index(users).get_indexer(pd.Index(labels["user_id"].astype(str)))
        ok = (label_rows >= 0) & (label_cols >= 0)
        truth = pair_matrix(label_rows[ok], label_cols[ok], np.ones(int(ok.sum())), history.shape, binary=True)
        y = np.asarray(truth[data.rows, data.cols], dtype=np.float64).ravel() if len(data.rows) else np.zeros(0)
        positive_users = np.unique(data.rows[y > 0])
        if len(positive_users) < 2:
            raise ValueError("fewer than two validation users have a labelled candidate: nothing to learn from")
        held = _early_stopping_users(len(positive_users), self.valid_share, self.seed)
        fit_mask = np.isin(data.rows, positive_users[~held])
        stop_mask = np.isin(data.rows, positive_users[held])
        model = lgb.LGBMRanker(**self.params, random_state=self.seed, n_jobs=self.num_threads, deterministic=True)
        model.fit(
            data.x[fit_mask],
            y[fit_mask],
            group=_group_sizes(data.rows[fit_mask]),
            eval_X=(data.x[stop_mask],),
            eval_y=(y[stop_mask],),
            eval_group=[_group_sizes(data.rows[stop_mask])],
            eval_at=[10],
            feature_name=data.names,
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        self.booster, self.feature_names = model.booster_, data.names
        self.evidence = {
            "n_label_users": len(users),
            "n_label_users_available": len(known),
            "n_users_with_positive_candidate": len(positive_users),
            "candidate_recall": float(y.sum() / max(int(ok.sum()), 1)),
            "n_candidate_rows": len(y),
            "best_iteration": int(model.best_iteration_ or model.n_estimators),
            "early_stopping_ndcg_at_10": float(model.best_score_["valid_0"]["ndcg@10"]),
        }
        return self

    def _label_sample(self, users: np.ndarray) -> np.ndarray:
        """``users`` (in their order), or a seeded sample of ``max_label_users`` of them when more."""
        if len(users) <= self.max_label_users:
            return users
        keep = np.random.default_rng(self.seed).choice(len(users), self.max_label_users, replace=False)
        return users[np.sort(keep)]

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items]: the model's score on each user's candidates, ``-inf`` elsewhere."""
        if self.booster is None:
            raise ValueError("the ranking model is not learned (fit_ranker)")
        data = self.rows_for(history, rows)
        out = np.full((len(rows), history.n_items), -np.inf, dtype=np.float32)
        if len(data.rows):
            x = _learned_columns(data, self.feature_names)
            local = np.searchsorted(rows, data.rows) if _is_sorted(rows) else _positions(rows, data.rows)
            predicted = self.booster.predict(x, num_threads=self.num_threads)
            out[local, data.cols] = np.asarray(predicted, dtype=np.float32)
        return out

    # --- storage -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-safe settings) of the fitted ranker: each generator's state (arrays keyed
        ``<generator>/<array>``), the item statistics and the LightGBM model as text.  The user and item
        feature frames are not stored: they are read at each ranking's own cutoff."""
        if self.stats is None or self.booster is None:
            raise ValueError("only a fitted and learned ranker can be stored")
        arrays: dict[str, np.ndarray] = {"item_ids": self.item_ids.astype(str)}
        generators: dict[str, Any] = {}
        for name, generator in self.generators.items():
            part_arrays, part_settings = generator.state()
            arrays.update({f"{name}/{key}": value for key, value in part_arrays.items()})
            generators[name] = {"class": type(generator).__name__, "settings": part_settings}
        stats = self.stats
        arrays.update(
            {
                "stats/log_users": stats.log_users,
                "stats/log_recent_users": stats.log_recent_users,
                "stats/category": stats.category,
                "stats/price": stats.price,
                "stats/brand": stats.brand,
                "stats/repeat_rate": stats.repeat_rate,
                "stats/category_pop_share": stats.category_pop_share,
                "stats/brand_pop_share": stats.brand_pop_share,
            }
        )
        settings = {
            "generators": generators,
            "generator_order": list(generators),  # the feature columns' order (stored JSON sorts keys)
            "n_candidates": self.n_candidates,
            "exclude": self.exclude,
            "params": self.params,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "feature_names": self.feature_names,
            "feature_service": self.feature_service,
            "evidence": self.evidence,
            "stats": {
                "n_categories": stats.n_categories,
                "n_brands": stats.n_brands,
                "reference_time": None if stats.reference_time is None else stats.reference_time.isoformat(),
            },
            "booster": self.booster.model_to_string(),
        }
        return arrays, settings

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> LearnedRanker:
        """The ranker of :meth:`state`."""
        import lightgbm as lgb

        item_ids = np.asarray(arrays["item_ids"]).astype(object)
        generators = {}
        for name in settings["generator_order"]:
            stored, prefix = settings["generators"][name], f"{name}/"
            part = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            generators[name] = GENERATOR_CLASSES[stored["class"]].from_state(item_ids, part, stored["settings"])
        ranker = cls(
            generators,
            n_candidates=settings["n_candidates"],
            exclude=settings["exclude"],
            params=settings["params"],
            seed=settings["seed"],
            num_threads=settings["num_threads"],
        )
        ranker.stats = _stored_stats(arrays, settings["stats"])
        ranker.item_ids = item_ids
        ranker.booster = lgb.Booster(model_str=settings["booster"])
        ranker.feature_names = list(settings["feature_names"])
        ranker.feature_service = settings.get("feature_service")
        ranker.evidence = dict(settings.get("evidence") or {})
        return ranker

    def feature_importances(self) -> dict[str, float]:
        """Total gain of each feature in the learned model, largest first."""
        if self.booster is None:
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        pairs = sorted(zip(self.feature_names, gains.tolist(), strict=True), key=lambda p: -p[1])
        return {name: round(float(gain), 3) for name, gain in pairs}


def _stored_stats(arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> ItemStats:
    """The :class:`ItemStats` of a stored ranker (``stats/*`` arrays and the ``stats`` settings)."""
    if "stats/brand_pop_share" not in arrays:
        raise ValueError(
            "this ranker was stored without the brand, popularity-share and repeat statistics of its features "
            "(an older RecoMart): retrain it"
        )
    reference = settings["reference_time"]
    return ItemStats(
        np.asarray(arrays["stats/log_users"]),
        np.asarray(arrays["stats/log_recent_users"]),
        np.asarray(arrays["stats/category"]),
        int(settings["n_categories"]),
        np.asarray(arrays["stats/price"]),
        None if reference is None else pd.Timestamp(reference),
        np.asarray(arrays["stats/brand"]),
        int(settings["n_brands"]),
        np.asarray(arrays["stats/repeat_rate"]),
        np.asarray(arrays["stats/category_pop_share"]),
        np.asarray(arrays["stats/brand_pop_share"]),
    )


def _group_sizes(rows: np.ndarray) -> np.ndarray:
    """Query sizes of the sorted ``rows`` (one query per user)."""
    _, counts = np.unique(rows, return_counts=True)
    return counts


def _is_sorted(rows: np.ndarray) -> bool:
    return bool(np.all(rows[1:] > rows[:-1]))


def _positions(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position in ``rows`` (unique) of each of ``values``."""
    return np.asarray(pd.Index(rows).get_indexer(pd.Index(values)), dtype=np.int64)


def _early_stopping_users(n_users: int, share: float, seed: int) -> np.ndarray:
    """bool[n_users]: a seeded ``share`` of ``n_users`` (at least 2) held out for early stopping, moved
    so that both the held and the learned parts have a user (LightGBM refuses an empty set)."""
    held = np.random.default_rng(seed).random(n_users) < share
    if not held.any():
        held[-1] = True
    if held.all():
        held[0] = False
    return held


def _learned_columns(data: RankerRows, learned: list[str]) -> np.ndarray:
    """``data.x`` with the ``learned`` feature columns in their order.  A learned column the rows lack
    (a feature-store value that did not exist yet at this ranking's cutoff, such as the user features of
    a shop's first days) is missing (NaN) for every row, with a warning; a column the model never
    learned is an error."""
    if data.names == learned:
        return data.x
    unknown = [name for name in data.names if name not in learned]
    if unknown:
        raise ValueError(f"features {unknown} were not learned (learned: {learned})")
    missing = [name for name in learned if name not in data.names]
    log.warning("features %s have no values at this cutoff: ranked as missing", missing)
    x = np.full((len(data.x), len(learned)), np.nan, dtype=np.float32)
    position = {name: n for n, name in enumerate(learned)}
    x[:, [position[name] for name in data.names]] = data.x
    return x
