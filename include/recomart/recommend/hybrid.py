"""Hybrid top-k: champion SVD scores blended with content scores per user block, popularity for cold start.

Per block of users known to the model, the SVD scores (``mu + bu + bi + pu·qi``; items unknown to the
model get the baseline ``mu + bu``, as surprise does) and the content scores are each min-max
normalised per user over the candidate items (items not excluded), blended with the champion's
weights (default 0.7 CF / 0.3 content) and cut to the top ``k``.  Users absent from the model (or
every user when there is no model) get the trending items of their segment.  Items the user bought
are excluded (``exclude="purchased"``, the feed policy for the generated data set).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.recommend.content import (
    content_scores,
    item_documents,
    item_vectors,
    recency_weights,
    user_profiles,
)
from recomart.recommend.popularity import Popularity, compute_popularity

if TYPE_CHECKING:
    from recomart.model.factors import FactorModel

ExcludePolicy = Literal["purchased", "interacted", "none"]

STRATEGY_HYBRID = "hybrid"
STRATEGY_COLD_START = "popular_cold_start"
STRATEGY_NO_MODEL = "popular_no_model"

OUTPUT_COLUMNS = [
    "user_id",
    "rank",
    "item_id",
    "score",
    "svd_score",
    "content_score",
    "popularity_score",
    "strategy",
    "model_version",
]


@dataclass(frozen=True)
class BlendWeights:
    """Blend weights of the normalised components; they are rescaled to sum to 1."""

    cf: float = 0.7
    content: float = 0.3
    popularity: float = 0.0

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> BlendWeights:
        """Weights from champion metadata ``{"weights": {"svd"|"cf": .., "content": .., "popularity": ..}}``.

        Missing, malformed or all-zero weights give the default 0.7 / 0.3.
        """
        raw = (meta or {}).get("weights")
        if not isinstance(raw, Mapping):
            return cls()
        try:
            cf = float(raw.get("cf", raw.get("svd", 0.0)) or 0.0)
            content = float(raw.get("content", 0.0) or 0.0)
            pop = float(raw.get("popularity", raw.get("pop", 0.0)) or 0.0)
        except (TypeError, ValueError):
            return cls()
        values = np.array([cf, content, pop])
        if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
            return cls()
        return cls(*(values / values.sum()).tolist())

    def normalised(self) -> BlendWeights:
        total = self.cf + self.content + self.popularity
        return BlendWeights(self.cf / total, self.content / total, self.popularity / total)


@dataclass(frozen=True)
class HybridInputs:
    """Everything the scorer needs, aligned on sorted user and item universes."""

    user_ids: np.ndarray  # object[n_users], sorted
    item_ids: np.ndarray  # object[n_items], sorted
    segment_rows: np.ndarray  # int64[n_users]: row of popularity.scores per user
    has_history: np.ndarray  # bool[n_users]
    popularity: Popularity
    items: sparse.csr_matrix  # n_items x vocabulary, L2-normalised TF-IDF
    profiles: sparse.csr_matrix  # n_users x vocabulary
    exclude: sparse.csr_matrix | None  # n_users x n_items, 1 = not recommendable


def _positions(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in the sorted ``universe`` (all values must be present)."""
    return np.searchsorted(universe, values).astype(np.int64)


def build_inputs(
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    products: pd.DataFrame,
    *,
    exclude: ExcludePolicy = "purchased",
    half_life_days: float = 30.0,
    window_days: int = 30,
) -> HybridInputs:
    """Align the marts into matrices.

    ``ratings``: ``user_id, item_id, purchases, last_interaction_at``; ``users``: ``user_id, segment``;
    ``products``: ``item_id, title, description, category, brand, price`` (+ optional ``price_band``).
    Users are those of ``users`` plus any user with ratings; items those of ``products`` plus rated items.
    """
    users = users.dropna(subset=["user_id"]).drop_duplicates("user_id")
    products = products.dropna(subset=["item_id"]).drop_duplicates("item_id")
    # a fixed row order makes every floating-point sum below reproducible
    ratings = ratings.sort_values(["user_id", "item_id"], kind="mergesort").reset_index(drop=True)
    user_ids = np.array(sorted(set(users["user_id"]).union(ratings["user_id"])), dtype=object)
    item_ids = np.array(sorted(set(products["item_id"]).union(ratings["item_id"])), dtype=object)
    n_users, n_items = len(user_ids), len(item_ids)

    rows = _positions(user_ids, ratings["user_id"].to_numpy(dtype=object))
    cols = _positions(item_ids, ratings["item_id"].to_numpy(dtype=object))
    has_history = np.bincount(rows, minlength=n_users) > 0

    catalogue = products.set_index("item_id").reindex(item_ids)
    items = item_vectors(item_documents(catalogue.reset_index(drop=True)))
    if len(ratings):
        reference = pd.to_datetime(ratings["last_interaction_at"], utc=True).max()
        weights = recency_weights(ratings["last_interaction_at"], reference, half_life_days=half_life_days)
    else:
        weights = np.zeros(0, dtype=np.float32)
    profiles = user_profiles(rows, cols, weights, n_users, items)

    if exclude == "none":
        excl = None
    else:
        keep = np.ones(len(ratings), dtype=bool)
        if exclude == "purchased":
            keep = pd.to_numeric(ratings["purchases"], errors="coerce").fillna(0).to_numpy() > 0
        elif exclude != "interacted":
            raise ValueError(f"unknown exclude policy {exclude!r}")
        excl = sparse.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(n_users, n_items)
        )
        excl.sum_duplicates()
        excl.data[:] = 1

    segments = users.set_index("user_id")["segment"]
    popularity = compute_popularity(ratings, item_ids, segments, window_days=window_days)
    segment_rows = popularity.segment_index(segments.reindex(user_ids))
    return HybridInputs(user_ids, item_ids, segment_rows, has_history, popularity, items, profiles, excl)


# --- per-block helpers -------------------------------------------------------
def _excluded_cells(exclude: sparse.csr_matrix | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block row, item column) of the excluded cells of the users ``rows``."""
    if exclude is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    block = exclude[rows]
    r = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    return r, block.indices.astype(np.int64)


def minmax_rows(scores: np.ndarray, ex_r: np.ndarray, ex_c: np.ndarray) -> np.ndarray:
    """Min-max scale each row to [0, 1] over its candidate cells (excluded cells ignored).

    A row with a constant (or no) candidate score maps to 0.
    """
    work = scores.astype(np.float32, copy=True)
    work[ex_r, ex_c] = np.inf
    lo = work.min(axis=1)
    work[ex_r, ex_c] = -np.inf
    hi = work.max(axis=1)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=ok)
    out = (scores - np.where(ok, lo, 0.0)[:, None]) * scale[:, None]
    return out.astype(np.float32, copy=False)


def _select(
    scores: np.ndarray, k: int, exclude: sparse.csr_matrix | None, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` candidates of each block row, best first (ties: lower item position, i.e. item id).

    Returns (block row, item column, value) of the valid picks, flattened in pick order.
    """
    from recomart.model.scoring import top_k

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


def _chunks(users: np.ndarray, block_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(users), block_size):
        yield users[start : start + block_size]


@dataclass
class _Picks:
    user: list[np.ndarray]
    item: list[np.ndarray]
    score: list[np.ndarray]
    svd: list[np.ndarray]
    content: list[np.ndarray]
    pop: list[np.ndarray]
    strategy: list[np.ndarray]

    @classmethod
    def empty(cls) -> _Picks:
        return cls([], [], [], [], [], [], [])

    def add(self, user, item, score, svd, content, pop, strategy: str) -> None:
        self.user.append(user)
        self.item.append(item)
        self.score.append(score)
        self.svd.append(svd)
        self.content.append(content)
        self.pop.append(pop)
        self.strategy.append(np.full(len(user), strategy, dtype=object))


def _model_alignment(model: FactorModel, inputs: HybridInputs) -> tuple[np.ndarray, np.ndarray]:
    user_rows = np.asarray(model.user_index(inputs.user_ids), dtype=np.int64)
    item_rows = np.asarray(model.item_index(inputs.item_ids), dtype=np.int64)
    return user_rows, item_rows


def _svd_block(model: FactorModel, mrows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
    """SVD scores on the warehouse item universe; items unknown to the model get ``mu + bu``."""
    from recomart.model.scoring import svd_scores

    raw = np.asarray(svd_scores(model, mrows), dtype=np.float32)
    if len(item_rows) == raw.shape[1] and np.array_equal(item_rows, np.arange(raw.shape[1])):
        return raw
    known = item_rows >= 0
    out = np.empty((len(mrows), len(item_rows)), dtype=np.float32)
    out[:, known] = raw[:, item_rows[known]]
    baseline = np.float32(model.global_mean) + np.asarray(model.user_bias, dtype=np.float32)[mrows]
    out[:, ~known] = baseline[:, None]
    return out


def recommend(
    inputs: HybridInputs,
    model: FactorModel | None,
    *,
    model_version: str | None = None,
    weights: BlendWeights | None = None,
    k: int = 10,
    block_size: int = 2048,
) -> pd.DataFrame:
    """Top-``k`` rows per user (:data:`OUTPUT_COLUMNS`), sorted by user and rank; deterministic."""
    weights = (weights or BlendWeights()).normalised()
    n_users = len(inputs.user_ids)
    picks = _Picks.empty()
    items_csc = inputs.items.tocsc()
    pop_scores = inputs.popularity.scores

    if model is not None:
        model_users, item_rows = _model_alignment(model, inputs)
        hybrid_users = np.flatnonzero(model_users >= 0)
        popular_users = np.flatnonzero(model_users < 0)
        popular_strategy = STRATEGY_COLD_START
    else:
        hybrid_users = np.zeros(0, dtype=np.int64)
        popular_users = np.arange(n_users)
        popular_strategy = STRATEGY_NO_MODEL

    for rows in _chunks(hybrid_users, block_size):
        ex_r, ex_c = _excluded_cells(inputs.exclude, rows)
        svd = _svd_block(model, model_users[rows], item_rows)
        con = content_scores(inputs.profiles, items_csc, rows)
        pop = pop_scores[inputs.segment_rows[rows]]
        blended = weights.cf * minmax_rows(svd, ex_r, ex_c) + weights.content * minmax_rows(con, ex_r, ex_c)
        if weights.popularity > 0:
            blended += weights.popularity * minmax_rows(pop, ex_r, ex_c)
        r, c, v = _select(blended, k, inputs.exclude, rows)
        picks.add(rows[r], c, v, svd[r, c], con[r, c], pop[r, c], STRATEGY_HYBRID)

    for rows in _chunks(popular_users, block_size):
        pop = pop_scores[inputs.segment_rows[rows]]
        r, c, v = _select(pop, k, inputs.exclude, rows)
        nan = np.full(len(r), np.nan, dtype=np.float32)
        picks.add(rows[r], c, v, nan, nan, v, popular_strategy)

    return _assemble(inputs, picks, model_version)


def _assemble(inputs: HybridInputs, picks: _Picks, model_version: str | None) -> pd.DataFrame:
    if not picks.user:
        return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
    user = np.concatenate(picks.user)
    order = np.argsort(user, kind="stable")  # blocks are in pick order per user
    user = user[order]

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False)[order]

    frame = pd.DataFrame(
        {
            "user_id": inputs.user_ids[user],
            "rank": _ranks(user),
            "item_id": inputs.item_ids[cat(picks.item, np.int64)],
            "score": cat(picks.score, np.float32),
            "svd_score": cat(picks.svd, np.float32),
            "content_score": cat(picks.content, np.float32),
            "popularity_score": cat(picks.pop, np.float32),
            "strategy": cat(picks.strategy, object),
            "model_version": model_version,
        }
    )
    return frame.reset_index(drop=True)
