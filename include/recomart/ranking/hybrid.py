"""The hybrid recommender: what training registers, the nightly job writes and the pyfunc serves.

Per block of users, every component is scored against every catalogue item, min-max normalised per
user over the candidate items (items not excluded) and summed with the fitted weights, then cut to
the top ``k``:

- ``cf``: the biased SVD, ``mu + bu + bi + pu·qi`` (items unknown to the factors get ``mu + bu``);
- ``item_item``: Σ over the user's recency-weighted history items of their top-N co-occurrence neighbours;
- ``content``: TF-IDF similarity to the user's recency-weighted profile (new items surface here), blended
  with the same similarity over the products' text embeddings when the ``content_embedding`` option
  says so (the item vectors are passed in: ``item_vectors``);
- ``buy_again``: the user's recency-weighted purchase counts, only when the feed allows repeats;
- ``popularity``: the prior ``log(1 + distinct users)`` of the item.

Cold-start rules (the strategies written with each row): ``hybrid`` (the SVD knows the user),
``hybrid_no_svd`` (history but no factors: the other components), ``popular_cold_start`` (no
history: trending in the user's segment, overall for an unknown segment) and ``popular_no_model``
(a non-personalised fallback, used while no model is registered).  With a learned ranker attached
(``ranker``, when it beat the blend on validation), users with history are ranked by it instead of
the blend (strategy ``ranker``; the component columns still hold the components' raw scores), and
users without history keep the segment popularity.  Purchased items are excluded
unless the feed allows repeat purchases (``exclude`` policy; see
:func:`recomart.ranking.history.exclusion_for`).

The item-side state (factors, neighbours, TF-IDF vectors, popularity tables) is fitted once; seen
items, buy-again counts and profiles come from the history passed to :meth:`HybridRecommender.rank`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.ranking.base import RankedItems, Recommender, TrainingSet
from recomart.ranking.blend import COMPONENTS, SCORE_COLUMNS, BlendWeights, blend, blend_options, minmax_rows
from recomart.ranking.blend import option_value as _option
from recomart.ranking.buy_again import BuyAgain
from recomart.ranking.content import Content
from recomart.ranking.embedding import ItemVectors
from recomart.ranking.history import ExcludePolicy, UserHistory, excluded_cells, exclusion_for
from recomart.ranking.item_item import ItemItem
from recomart.ranking.popularity import Popularity
from recomart.ranking.ranker import LearnedRanker
from recomart.ranking.scoring import top_k
from recomart.ranking.svd import BiasedSVD

STRATEGY_HYBRID = "hybrid"
STRATEGY_NO_SVD = "hybrid_no_svd"
STRATEGY_COLD_START = "popular_cold_start"
STRATEGY_NO_MODEL = "popular_no_model"
STRATEGY_RANKER = "ranker"

#: the columns of :meth:`HybridRecommender.rank`, one row per user and rank
RANKED_COLUMNS = ["user_id", "rank", "item_id", "score", *SCORE_COLUMNS.values(), "strategy"]


def _select(
    scores: np.ndarray, k: int, exclude: sparse.csr_matrix | None, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` candidates of each block row, best first (ties: lower item position, i.e. item id).

    Returns (block row, item column, value) of the valid picks, flattened in pick order.
    """
    k = min(k, scores.shape[1])
    if k == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    idx, vals = top_k(scores, k, exclude=exclude, exclude_rows=None if exclude is None else rows)
    idx, vals = np.asarray(idx, dtype=np.int64), np.asarray(vals, dtype=np.float32)
    block_rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    valid = np.isfinite(vals).ravel() & (idx.ravel() >= 0)
    return block_rows[valid], idx.ravel()[valid], vals.ravel()[valid]


def _ranks(rows: np.ndarray) -> np.ndarray:
    """1-based rank within each run of equal ``rows`` (rows are grouped and in pick order)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int32)
    starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    return (np.arange(len(rows)) - first + 1).astype(np.int32)


def _chunks(rows: np.ndarray, block_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), block_size):
        yield rows[start : start + block_size]


@dataclass
class _Picks:
    """The picks of every block, concatenated into the ranked frame at the end."""

    user: list[np.ndarray]
    item: list[np.ndarray]
    score: list[np.ndarray]
    parts: dict[str, list[np.ndarray]]
    strategy: list[np.ndarray]

    @classmethod
    def empty(cls) -> _Picks:
        return cls([], [], [], {c: [] for c in COMPONENTS}, [])

    def add(
        self, user: np.ndarray, item: np.ndarray, score: np.ndarray, parts: Mapping[str, np.ndarray], strategy: str
    ) -> None:
        self.user.append(user)
        self.item.append(item)
        self.score.append(score)
        missing = np.full(len(user), np.nan, dtype=np.float32)
        for name in COMPONENTS:
            self.parts[name].append(parts.get(name, missing))
        self.strategy.append(np.full(len(user), strategy, dtype=object))

    def frame(self, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
        """:data:`RANKED_COLUMNS`, users in the order of ``user_ids`` and ranks ascending."""
        if not self.user:
            return pd.DataFrame({column: [] for column in RANKED_COLUMNS})
        user = np.concatenate(self.user)
        order = np.argsort(user, kind="stable")  # blocks are in pick order per user
        user = user[order]

        def column(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype, copy=False)[order]

        columns: dict[str, Any] = {
            "user_id": user_ids[user],
            "rank": _ranks(user),
            "item_id": item_ids[column(self.item, np.int64)],
            "score": column(self.score, np.float32),
        }
        for name, score_column in SCORE_COLUMNS.items():
            columns[score_column] = column(self.parts[name], np.float32)
        columns["strategy"] = column(self.strategy, object)
        return pd.DataFrame(columns)[RANKED_COLUMNS].reset_index(drop=True)


def request_users(users: pd.DataFrame | Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(unique user ids in request order, their segments or None) of a request: a frame with
    ``user_id`` and optional ``segment``, or a sequence of ids."""
    if isinstance(users, pd.DataFrame):
        frame = users.dropna(subset=["user_id"]).assign(user_id=lambda f: f["user_id"].astype(str))
        frame = frame.drop_duplicates("user_id")
        segments = frame["segment"].to_numpy(dtype=object) if "segment" in frame else None
        return frame["user_id"].to_numpy(dtype=object), segments
    return np.asarray(pd.unique(pd.Series(np.asarray(users, dtype=object)).astype(str)), dtype=object), None


class HybridRecommender(Recommender):
    """The blend of :data:`~recomart.ranking.blend.COMPONENTS` with fitted weights and options.

    ``weights``: :class:`BlendWeights`; ``options``: the component settings (``top_n`` neighbours,
    ``prior_days`` of the popularity prior, ``buy_again_half_life_days``; see
    :func:`~recomart.ranking.blend.blend_options`); ``repeat_purchases``: the feed's policy (enables
    buy-again and, unless ``exclude`` says otherwise, keeps purchased items recommendable); ``svd``: a
    fitted :class:`BiasedSVD` (or an unfitted one, fitted with the rest), ``None`` for no factors;
    ``personalised=False`` ranks every user by segment popularity (``popular_no_model``);
    ``item_vectors``: the item embeddings the content component blends in when the ``content_embedding``
    option is set (kept with the fitted state, so a loaded hybrid needs none).
    """

    def __init__(
        self,
        *,
        weights: BlendWeights | None = None,
        options: Mapping[str, Any] | None = None,
        repeat_purchases: bool = False,
        exclude: ExcludePolicy | None = None,
        svd: BiasedSVD | None = None,
        personalised: bool = True,
        item_vectors: ItemVectors | None = None,
    ) -> None:
        self.weights = weights or BlendWeights()
        self.options = dict(options or {})
        self.repeat_purchases = bool(repeat_purchases)
        self.exclude: ExcludePolicy = exclusion_for(repeat_purchases) if exclude is None else exclude
        self.personalised = bool(personalised)
        self.svd = svd
        self.popularity = Popularity(prior_days=_option(self.options, "prior_days"))
        self.item_item = ItemItem(top_n=_option(self.options, "top_n"))
        self.content = Content(embedding_share=_option(self.options, "content_embedding"), item_vectors=item_vectors)
        half_life = _option(self.options, "buy_again_half_life_days")
        self.buy_again = BuyAgain(half_life_days=half_life) if self.repeat_purchases else None
        self.item_ids = np.zeros(0, dtype=object)
        #: the learned ranker that replaces the blend for users with history (None: the blend ranks)
        self.ranker: LearnedRanker | None = None

    # --- fitting -----------------------------------------------------------------------------
    def components(self) -> dict[str, Recommender]:
        """The components this hybrid holds, by blend name."""
        parts: dict[str, Recommender | None] = {
            "cf": self.svd,
            "item_item": self.item_item,
            "content": self.content,
            "buy_again": self.buy_again,
            "popularity": self.popularity,
        }
        return {name: part for name, part in parts.items() if part is not None}

    def fit(self, training: TrainingSet) -> HybridRecommender:
        """Fit every component on ``training`` (a fitted SVD is only re-aligned on its catalogue)."""
        self.item_ids = training.item_ids
        for name, part in self.components().items():
            if name == "cf" and self.svd is not None and self.svd.factors is not None:
                self.svd = BiasedSVD.from_factors(self.svd.model, training.item_ids)
            else:
                part.fit(training)
        return self

    def variant(self, *, weights: BlendWeights, svd: BiasedSVD | None) -> HybridRecommender:
        """A hybrid sharing this one's fitted components, with other ``weights`` and factors ``svd``
        (re-aligned on this catalogue)."""
        other = copy.copy(self)
        other.weights = weights
        other.svd = None if svd is None else BiasedSVD.from_factors(svd.model, self.item_ids)
        return other

    # --- ranking -----------------------------------------------------------------------------
    def rank(
        self,
        users: pd.DataFrame | Sequence[str] | np.ndarray,
        history: pd.DataFrame,
        *,
        k: int = 10,
        block_size: int = 2048,
        component_columns: bool = True,
    ) -> pd.DataFrame:
        """Top-``k`` rows per user (:data:`RANKED_COLUMNS`), users in request order, ranks ascending.

        ``users``: a frame with ``user_id`` and optional ``segment`` (for cold start), or ids;
        ``history``: the users' interactions as of now (:mod:`recomart.ranking.history` contract).
        ``component_columns=False`` skips components whose weight is 0 (their columns are then NaN).
        Deterministic: the same request and history give the same frame.
        """
        user_ids, segments = request_users(users)
        aligned = UserHistory.align(history, user_ids, self.item_ids, segments)
        return self.rank_aligned(aligned, k=k, block_size=block_size, component_columns=component_columns)

    def rank_aligned(
        self,
        history: UserHistory,
        *,
        k: int = 10,
        block_size: int = 2048,
        component_columns: bool = True,
        exclude: ExcludePolicy | None = None,
    ) -> pd.DataFrame:
        """:meth:`rank` for an aligned history (``exclude`` overrides the feed's policy)."""
        mask = history.exclusion(self.exclude if exclude is None else exclude)
        weights = self.weights.normalised()
        needed = None if component_columns else weights.as_dict()
        picks = _Picks.empty()
        groups, popular_rows, popular_strategy = self._strategy_groups(history)
        for rows, model_rows, strategy in groups:
            for start in range(0, len(rows), block_size):
                block = rows[start : start + block_size]
                block_model_rows = None if model_rows is None else model_rows[start : start + block_size]
                ex_r, ex_c = excluded_cells(mask, block)
                parts = self.component_scores(history, block, model_rows=block_model_rows, needed=needed)
                if self.ranker is None:
                    scores, label = blend(parts, weights, ex_r, ex_c), strategy
                else:
                    scores, label = self.ranker.score(history, block), STRATEGY_RANKER
                r, c, v = _select(scores, k, mask, block)
                picks.add(block[r], c, v, {name: part[r, c] for name, part in parts.items()}, label)
        segment_rows = self.popularity.segment_rows(history.segment_values())
        for block in _chunks(popular_rows, block_size):
            scores = self.popularity.cold_start_scores(segment_rows[block])
            r, c, v = _select(scores, k, mask, block)
            picks.add(block[r], c, v, {"popularity": v}, popular_strategy)
        return picks.frame(history.user_ids, self.item_ids)

    def _strategy_groups(
        self, history: UserHistory
    ) -> tuple[list[tuple[np.ndarray, np.ndarray | None, str]], np.ndarray, str]:
        """([(user rows, their factor rows or None, strategy)] of the blended groups, the rows ranked by
        segment popularity, and that group's strategy)."""
        everyone = np.arange(history.n_users)
        if not self.personalised:
            return [], everyone, STRATEGY_NO_MODEL
        if self.svd is None:
            model_rows = np.full(history.n_users, -1, dtype=np.int64)
        else:
            model_rows = self.svd.user_rows(history.user_ids)
        has_history = history.has_history
        with_svd = np.flatnonzero(model_rows >= 0)
        without_svd = np.flatnonzero((model_rows < 0) & has_history)
        cold = np.flatnonzero((model_rows < 0) & ~has_history)
        groups = [(with_svd, model_rows[with_svd], STRATEGY_HYBRID), (without_svd, None, STRATEGY_NO_SVD)]
        return groups, cold, STRATEGY_COLD_START

    def component_scores(
        self,
        history: UserHistory,
        rows: np.ndarray,
        *,
        model_rows: np.ndarray | None = None,
        needed: Mapping[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw dense ``[len(rows), n_items]`` score blocks of every available component of users ``rows``.

        ``cf`` needs the users' factor rows ``model_rows`` (all >= 0); ``needed`` (component → weight)
        skips components whose weight is 0, except popularity, which is always returned (it is an
        output column and the fallback of the blend).
        """
        out: dict[str, np.ndarray] = {}
        for name, part in self.components().items():
            if name == "popularity" or (needed is not None and needed.get(name, 0.0) <= 0):
                continue
            if name == "cf":
                if model_rows is not None and self.svd is not None:
                    out[name] = self.svd.score_model_rows(model_rows)
            else:
                out[name] = part.score(history, rows)
        out["popularity"] = self.popularity.score(history, rows)
        return out

    def normalised_components(
        self, history: UserHistory, rows: np.ndarray, *, block_size: int = 1024
    ) -> dict[str, np.ndarray]:
        """Every component of users ``rows``, min-max normalised per user over the candidates of the
        feed's exclusion (``cf`` is 0 for users the factors do not know): what a weight search sums."""
        mask = history.exclusion(self.exclude)
        parts: dict[str, list[np.ndarray]] = {}
        for block in _chunks(rows, block_size):
            ex_r, ex_c = excluded_cells(mask, block)
            for name, values in self._scores_with_zero_cf(history, block).items():
                parts.setdefault(name, []).append(minmax_rows(values, ex_r, ex_c))
        return {name: np.concatenate(blocks) for name, blocks in parts.items()}

    def _scores_with_zero_cf(self, history: UserHistory, rows: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`component_scores` of ``rows`` plus ``cf`` where the factors know the user, 0 elsewhere."""
        scores = self.component_scores(history, rows)
        if self.svd is not None:
            model_rows = self.svd.user_rows(history.user_ids[rows])
            cf = np.zeros((len(rows), len(self.item_ids)), dtype=np.float32)
            known = model_rows >= 0
            if known.any():
                cf[known] = self.svd.score_model_rows(model_rows[known])
            scores["cf"] = cf
        return scores

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        """The blended score of users ``rows`` (``cf`` counts as 0 for users the factors do not know)."""
        ex_r, ex_c = excluded_cells(history.exclusion(self.exclude), rows)
        return blend(self._scores_with_zero_cf(history, rows), self.weights.normalised(), ex_r, ex_c)

    def recommend(
        self,
        user_ids: Sequence[str] | np.ndarray,
        history: pd.DataFrame,
        k: int = 10,
        filter_seen: bool = True,
        *,
        block_size: int = 2048,
    ) -> RankedItems:
        """:meth:`rank` as item ids and scores (``filter_seen=False``: nothing excluded)."""
        ids, _ = request_users(user_ids)
        aligned = UserHistory.align(history, ids, self.item_ids)
        frame = self.rank_aligned(
            aligned, k=k, block_size=block_size, component_columns=False, exclude=None if filter_seen else "none"
        )
        return ranked_items(frame, ids, k)

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        """Item-to-item co-occurrence neighbours."""
        return self.item_item.similar_items(item_ids, k)

    def similar_items_frame(self) -> pd.DataFrame:
        """Every item's co-occurrence neighbours: the rows of ``reco.similar_items``."""
        return self.item_item.neighbours_frame()

    def popular_items_frame(self, n: int = 100) -> pd.DataFrame:
        """The cold-start tables' top ``n`` per segment: the rows of ``reco.popular_items``."""
        return self.popularity.popular_frame(n)

    # --- storage -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, settings) of the fitted hybrid: what :meth:`from_state` rebuilds it from."""
        arrays: dict[str, np.ndarray] = {"item_ids": self.item_ids.astype(str)}
        settings: dict[str, Any] = {
            "weights": self.weights.as_dict(),
            "options": dict(self.options),
            "repeat_purchases": self.repeat_purchases,
            "exclude": self.exclude,
            "personalised": self.personalised,
            "components": {},
        }
        for name, part in self.components().items():
            part_arrays, part_settings = part.state()
            arrays.update({f"{name}/{key}": value for key, value in part_arrays.items()})
            settings["components"][name] = part_settings
        if self.ranker is not None:
            ranker_arrays, settings["ranker"] = self.ranker.state()
            arrays.update({f"ranker/{key}": value for key, value in ranker_arrays.items()})
        return arrays, settings

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], settings: Mapping[str, Any]) -> HybridRecommender:
        """The hybrid of :meth:`state`."""
        hybrid = cls(
            weights=BlendWeights(**{name: float(value) for name, value in settings["weights"].items()}),
            options=blend_options(settings["options"]),
            repeat_purchases=settings["repeat_purchases"],
            exclude=settings["exclude"],
            personalised=settings["personalised"],
        )
        item_ids = np.asarray(arrays["item_ids"]).astype(object)
        hybrid.item_ids = item_ids
        parts: dict[str, Any] = {
            "cf": BiasedSVD,
            "item_item": ItemItem,
            "content": Content,
            "buy_again": BuyAgain,
            "popularity": Popularity,
        }
        for name, component_settings in settings["components"].items():
            prefix = f"{name}/"
            part_arrays = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            part = parts[name].from_state(item_ids, part_arrays, component_settings)
            setattr(hybrid, "svd" if name == "cf" else name, part)
        if settings.get("ranker") is not None:
            stored = {key[len("ranker/") :]: value for key, value in arrays.items() if key.startswith("ranker/")}
            hybrid.ranker = LearnedRanker.from_state(stored, settings["ranker"])
        return hybrid


def ranked_items(frame: pd.DataFrame, user_ids: np.ndarray, k: int) -> RankedItems:
    """:class:`RankedItems` (one row per ``user_ids``) of a :meth:`HybridRecommender.rank` frame."""
    ids = np.full((len(user_ids), k), None, dtype=object)
    scores = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
    positions = pd.Index(user_ids).get_indexer(pd.Index(frame["user_id"].to_numpy(dtype=object)))
    ranks = frame["rank"].to_numpy(dtype=np.int64) - 1
    keep = (positions >= 0) & (ranks < k)
    ids[positions[keep], ranks[keep]] = frame["item_id"].to_numpy(dtype=object)[keep]
    scores[positions[keep], ranks[keep]] = frame["score"].to_numpy(dtype=np.float32)[keep]
    return RankedItems(ids, scores)
