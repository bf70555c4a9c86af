"""Hybrid top-k: SVD, item-to-item, content, buy-again and a popularity prior, blended per user block.

Per block of users, every component is scored against every item, min-max normalised per user over
the candidate items (items not excluded) and summed with the champion's weights (default 0.7 CF /
0.3 content when the trainer had too little data to fit them), then cut to the top ``k``:

- ``svd``: ``mu + bu + bi + pu·qi`` (items unknown to the model get ``mu + bu``, as surprise does);
- ``item_item``: Σ over the user's recency-weighted items of their top-N co-occurrence neighbours;
- ``content``: TF-IDF similarity to the user's recency-weighted profile (new items surface here);
- ``buy_again``: the user's recency-weighted purchase counts, only when the feed allows repeats;
- ``popularity``: the prior ``log(1 + distinct users)`` of the item (cold start uses segment trending).

Strategies: ``hybrid`` (user known to the model), ``hybrid_no_svd`` (history but no factors: the
other components), ``popular_cold_start`` (no history: trending in the segment) and
``popular_no_model`` (no champion yet).  Purchased items are excluded unless the feed's policy
allows repeat purchases (``repeat_purchases_recommendable``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.recommend.buy_again import buy_again_matrix, buy_again_scores, purchase_weights
from recomart.recommend.content import (
    content_scores,
    item_documents,
    item_vectors,
    recency_weights,
    user_profiles,
)
from recomart.recommend.item_item import (
    Similarity,
    incidence,
    item_item_scores,
    item_similarity,
    user_item_weights,
)
from recomart.recommend.popularity import Popularity, compute_popularity

if TYPE_CHECKING:
    from recomart.model.factors import FactorModel

ExcludePolicy = Literal["purchased", "interacted", "none"]

STRATEGY_HYBRID = "hybrid"
STRATEGY_NO_SVD = "hybrid_no_svd"
STRATEGY_COLD_START = "popular_cold_start"
STRATEGY_NO_MODEL = "popular_no_model"

COMPONENTS = ("cf", "item_item", "content", "buy_again", "popularity")
#: output column of each component's raw score
SCORE_COLUMNS = {
    "cf": "svd_score",
    "item_item": "item_item_score",
    "content": "content_score",
    "buy_again": "buy_again_score",
    "popularity": "popularity_score",
}

OUTPUT_COLUMNS = [
    "user_id",
    "rank",
    "item_id",
    "score",
    *SCORE_COLUMNS.values(),
    "strategy",
    "model_version",
]

_ALIASES = {"cf": ("cf", "svd"), "popularity": ("popularity", "pop"), "item_item": ("item_item", "itemitem")}


def exclusion_for(repeat_purchases: bool) -> ExcludePolicy:
    """The exclusion policy of a feed: purchased items are recommendable again only if it allows repeats."""
    return "none" if repeat_purchases else "purchased"


@dataclass(frozen=True)
class BlendWeights:
    """Blend weights of the normalised components; they are rescaled to sum to 1."""

    cf: float = 0.7
    content: float = 0.3
    popularity: float = 0.0
    item_item: float = 0.0
    buy_again: float = 0.0

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> BlendWeights:
        """Weights from champion metadata ``{"weights": {"cf"|"svd", "content", "popularity", "item_item",
        "buy_again"}}``.  Missing, malformed or all-zero weights give the default 0.7 / 0.3."""
        raw = (meta or {}).get("weights")
        if not isinstance(raw, Mapping):
            return cls()
        values = {}
        try:
            for name in COMPONENTS:
                keys = _ALIASES.get(name, (name,))
                value = next((raw[k] for k in keys if k in raw), 0.0)
                values[name] = float(value or 0.0)
        except (TypeError, ValueError):
            return cls()
        arr = np.array(list(values.values()))
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or arr.sum() <= 0:
            return cls()
        return cls(**{k: v / arr.sum() for k, v in values.items()})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def normalised(self) -> BlendWeights:
        total = sum(self.as_dict().values())
        return BlendWeights(**{k: v / total for k, v in self.as_dict().items()})


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
    history: sparse.csr_matrix | None = None  # n_users x n_items, recency weights of interactions
    similarity: sparse.csr_matrix | None = None  # n_items x n_items, top-N neighbours
    buy_again: sparse.csr_matrix | None = None  # n_users x n_items, only when repeats are allowed
    repeat_purchases: bool = False


def _positions(universe: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in the sorted ``universe`` (all values must be present)."""
    return np.searchsorted(universe, values).astype(np.int64)


def _exclusion_matrix(
    ratings: pd.DataFrame, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], exclude: ExcludePolicy
) -> sparse.csr_matrix | None:
    if exclude == "none":
        return None
    if exclude == "purchased":
        keep = pd.to_numeric(ratings["purchases"], errors="coerce").fillna(0).to_numpy() > 0
    elif exclude == "interacted":
        keep = np.ones(len(ratings), dtype=bool)
    else:
        raise ValueError(f"unknown exclude policy {exclude!r}")
    excl = sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=shape)
    excl.sum_duplicates()
    excl.data[:] = 1
    return excl


def build_inputs(
    ratings: pd.DataFrame,
    users: pd.DataFrame,
    products: pd.DataFrame,
    *,
    repeat_purchases: bool = False,
    exclude: ExcludePolicy | None = None,
    half_life_days: float = 30.0,
    window_days: int = 30,
    similarity: Similarity = "jaccard",
    top_n: int = 50,
    prior_days: int | None = None,
    buy_again_half_life_days: float | None = None,
) -> HybridInputs:
    """Align the marts into matrices.

    ``ratings``: ``user_id, item_id, purchases, last_interaction_at``; ``users``: ``user_id, segment``;
    ``products``: ``item_id, title, description, category, brand, price`` (+ optional ``price_band``).
    Users are those of ``users`` plus any user with ratings; items those of ``products`` plus rated items.
    ``repeat_purchases`` is the feed's policy: it enables buy-again and, unless ``exclude`` overrides
    it, stops excluding purchased items (:func:`exclusion_for`).  ``top_n`` neighbours per item,
    ``prior_days`` (popularity prior window, ``None``: all time) and ``buy_again_half_life_days``
    (``None``: ``half_life_days``) are the options :func:`recomart.recommend.blend.fit_blend_options`
    chooses on the validation window.
    """
    exclude = exclusion_for(repeat_purchases) if exclude is None else exclude
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
        # recency relative to the user's own latest interaction: a user's history keeps its shape
        # however long ago they were active (the per-user normalisation would undo a global decay)
        ts = pd.to_datetime(ratings["last_interaction_at"], utc=True)
        reference = ts.groupby(ratings["user_id"].to_numpy()).transform("max")
        weights = recency_weights(ts, reference, half_life_days=half_life_days)
        again_hl = buy_again_half_life_days or half_life_days
        again_weights = recency_weights(ts, reference, half_life_days=again_hl)
    else:
        weights = again_weights = np.zeros(0, dtype=np.float32)
    profiles = user_profiles(rows, cols, weights, n_users, items)
    history = user_item_weights(rows, cols, weights, n_users, n_items)
    sim = item_similarity(incidence(rows, cols, n_users, n_items), top_n=top_n, method=similarity)
    again = None
    if repeat_purchases:
        purchases = ratings["purchases"] if "purchases" in ratings else np.zeros(len(ratings))
        again = buy_again_matrix(rows, cols, purchase_weights(purchases, again_weights), n_users, n_items)
    excl = _exclusion_matrix(ratings, rows, cols, (n_users, n_items), exclude)

    segments = users.set_index("user_id")["segment"] if "segment" in users else pd.Series(dtype=object)
    popularity = compute_popularity(ratings, item_ids, segments, window_days=window_days, prior_days=prior_days)
    segment_rows = popularity.segment_index(segments.reindex(user_ids))
    return HybridInputs(
        user_ids,
        item_ids,
        segment_rows,
        has_history,
        popularity,
        items,
        profiles,
        excl,
        history,
        sim,
        again,
        repeat_purchases,
    )


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
    np.subtract(scores, np.where(ok, lo, 0.0).astype(np.float32)[:, None], out=work)
    work *= scale[:, None]
    return work


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


def model_alignment(model: FactorModel, inputs: HybridInputs) -> tuple[np.ndarray, np.ndarray]:
    """(model row of each warehouse user, model row of each warehouse item); -1 = unknown."""
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


def component_scores(
    inputs: HybridInputs,
    rows: np.ndarray,
    *,
    model: FactorModel | None = None,
    model_rows: np.ndarray | None = None,
    item_rows: np.ndarray | None = None,
    items_csc: sparse.csc_matrix | None = None,
    needed: Mapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Raw dense ``[len(rows), n_items]`` score blocks of every available component of users ``rows``.

    ``cf`` needs ``model`` and the users' ``model_rows`` (all >= 0); ``buy_again`` needs a feed
    that allows repeats.  ``needed`` (component → weight) skips components whose weight is 0, except
    popularity, which is always returned (it is the cold-start ranking and an output column).
    """
    want = (lambda name: True) if needed is None else (lambda name: needed.get(name, 0.0) > 0)
    out: dict[str, np.ndarray] = {}
    if model is not None and model_rows is not None and want("cf"):
        if item_rows is None:
            item_rows = np.asarray(model.item_index(inputs.item_ids), dtype=np.int64)
        out["cf"] = _svd_block(model, model_rows, item_rows)
    if inputs.history is not None and inputs.similarity is not None and want("item_item"):
        out["item_item"] = item_item_scores(inputs.history, inputs.similarity, rows)
    if want("content"):
        out["content"] = content_scores(inputs.profiles, inputs.items.tocsc() if items_csc is None else items_csc, rows)
    if inputs.buy_again is not None and want("buy_again"):
        out["buy_again"] = buy_again_scores(inputs.buy_again, rows)
    prior = inputs.popularity.prior
    if prior is None:
        out["popularity"] = inputs.popularity.scores[inputs.segment_rows[rows]]
    else:
        out["popularity"] = np.broadcast_to(prior, (len(rows), len(prior)))
    return out


def blend(
    components: Mapping[str, np.ndarray], weights: BlendWeights, ex_r: np.ndarray, ex_c: np.ndarray
) -> np.ndarray:
    """Σ weight × per-user min-max normalised component (components absent from the mapping are skipped)."""
    w = weights.as_dict()
    used = [name for name in COMPONENTS if name in components and w[name] > 0]
    if not used:  # nothing weighted is available (e.g. no SVD and only CF weighted): the prior decides
        used, w = ["popularity"], {"popularity": 1.0}
    total: np.ndarray | None = None
    for name in used:
        part = minmax_rows(components[name], ex_r, ex_c)
        part *= np.float32(w[name])
        total = part if total is None else np.add(total, part, out=total)
    return total


@dataclass
class _Picks:
    user: list[np.ndarray]
    item: list[np.ndarray]
    score: list[np.ndarray]
    parts: dict[str, list[np.ndarray]]
    strategy: list[np.ndarray]

    @classmethod
    def empty(cls) -> _Picks:
        return cls([], [], [], {c: [] for c in COMPONENTS}, [])

    def add(self, user, item, score, components: Mapping[str, np.ndarray], strategy: str) -> None:
        self.user.append(user)
        self.item.append(item)
        self.score.append(score)
        nan = np.full(len(user), np.nan, dtype=np.float32)
        for name in COMPONENTS:
            self.parts[name].append(components.get(name, nan))
        self.strategy.append(np.full(len(user), strategy, dtype=object))


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
        model_users, item_rows = model_alignment(model, inputs)
        svd_users = np.flatnonzero(model_users >= 0)
        no_svd_users = np.flatnonzero((model_users < 0) & inputs.has_history)
        popular_users = np.flatnonzero((model_users < 0) & ~inputs.has_history)
        popular_strategy = STRATEGY_COLD_START
    else:
        model_users, item_rows = np.zeros(0, dtype=np.int64), None
        svd_users = no_svd_users = np.zeros(0, dtype=np.int64)
        popular_users = np.arange(n_users)
        popular_strategy = STRATEGY_NO_MODEL

    for users, strategy, with_model in ((svd_users, STRATEGY_HYBRID, True), (no_svd_users, STRATEGY_NO_SVD, False)):
        for rows in _chunks(users, block_size):
            ex_r, ex_c = _excluded_cells(inputs.exclude, rows)
            comps = component_scores(
                inputs,
                rows,
                model=model if with_model else None,
                model_rows=model_users[rows] if with_model else None,
                item_rows=item_rows,
                items_csc=items_csc,
            )
            blended = blend(comps, weights, ex_r, ex_c)
            r, c, v = _select(blended, k, inputs.exclude, rows)
            picks.add(rows[r], c, v, {name: comp[r, c] for name, comp in comps.items()}, strategy)

    for rows in _chunks(popular_users, block_size):
        pop = pop_scores[inputs.segment_rows[rows]]
        r, c, v = _select(pop, k, inputs.exclude, rows)
        picks.add(rows[r], c, v, {"popularity": v}, popular_strategy)

    return _assemble(inputs, picks, model_version)


def _assemble(inputs: HybridInputs, picks: _Picks, model_version: str | None) -> pd.DataFrame:
    if not picks.user:
        return pd.DataFrame({c: [] for c in OUTPUT_COLUMNS})
    user = np.concatenate(picks.user)
    order = np.argsort(user, kind="stable")  # blocks are in pick order per user
    user = user[order]

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False)[order]

    columns: dict[str, Any] = {
        "user_id": inputs.user_ids[user],
        "rank": _ranks(user),
        "item_id": inputs.item_ids[cat(picks.item, np.int64)],
        "score": cat(picks.score, np.float32),
    }
    for name, column in SCORE_COLUMNS.items():
        columns[column] = cat(picks.parts[name], np.float32)
    columns["strategy"] = cat(picks.strategy, object)
    columns["model_version"] = model_version
    return pd.DataFrame(columns)[OUTPUT_COLUMNS].reset_index(drop=True)
