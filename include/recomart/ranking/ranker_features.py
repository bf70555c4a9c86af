"""Candidates and features of the learned ranker (:mod:`recomart.ranking.ranker`), built without per-pair loops.

**Candidates.** For a block of users, each candidate generator scores the catalogue once (a dense
float32 block) and keeps its top ``n`` items under the feed's exclusion policy; the candidates are the
union of those (user, item) pairs.  A zero or ``-inf`` score never makes a candidate (it says "no
evidence": an item outside EASE's kept set, an item the user never bought for buy-again, an item the
walk never reaches), but the pair keeps its score as a feature if another generator proposes it.

**Features** of each (user, item) pair, all from the history passed in and the state fitted on the
training history (so only from data before the cutoff; :func:`history_before` drops the rest):

- ``<generator>_score`` (NaN for ``-inf``) and ``<generator>_rank`` (0-based position in the
  generator's top ``n``; ``n`` when outside it);
- pair features: ``pair_seen`` (1 if the user interacted with the item), ``pair_purchases``,
  ``pair_age_days`` (days from the pair's last interaction to the user's latest; NaN if unseen);
- user features: ``user_n_items``, ``user_days_inactive`` (days from the user's latest interaction to
  the training reference time), ``user_repeat_share`` (share of the user's bought items bought more
  than once; NaN without a purchase);
- item features (:class:`ItemStats`, fitted): ``item_log_users``, ``item_log_recent_users`` (last
  ``recent_days`` before the reference time), ``item_category_pop_share`` / ``item_brand_pop_share``
  (the item's share of the distinct users of its category's / brand's items: its popularity within
  them; NaN for an unknown category / brand), ``item_repeat_rate`` (share of the item's buyers who
  bought it more than once; NaN without a buyer);
- cross features: ``category_share`` and ``brand_share`` (share of the user's items in the item's
  category / of the item's brand) and ``price_ratio`` (item price / mean price of the user's priced
  items; NaN without prices);
- external columns (:func:`frame_columns`): a user-feature frame indexed by ``user_id`` and an
  item-feature frame indexed by ``item_id`` (e.g. point-in-time feature-store values at the cutoff),
  joined as ``user_<column>`` / ``item_<column>``; unknown ids get NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.history import ExcludePolicy, UserHistory, pair_matrix
from recomart.ranking.scoring import top_k

#: days of the "recent users" item count
RECENT_DAYS = 30


def history_before(history: pd.DataFrame, cutoff: pd.Timestamp | None) -> pd.DataFrame:
    """The pairs of ``history`` whose ``last_interaction_at`` (or ``event_timestamp``) is before ``cutoff``
    (all of them when ``cutoff`` is None)."""
    if cutoff is None:
        return history
    column = "last_interaction_at" if "last_interaction_at" in history else "event_timestamp"
    ts = pd.to_datetime(history[column], utc=True)
    return history[(ts < pd.Timestamp(cutoff)).to_numpy()]


@dataclass(frozen=True)
class ItemStats:
    """Item state fitted on the training history: ``log_users`` / ``log_recent_users`` (float32[n_items],
    ``log1p`` of distinct users, all time / last ``RECENT_DAYS``), ``category`` and ``brand``
    (int64[n_items] codes, ``-1`` unknown), ``price`` (float64[n_items], NaN unknown), ``repeat_rate``
    (float32[n_items], share of the item's buyers with more than one purchase, NaN without a buyer),
    ``category_pop_share`` / ``brand_pop_share`` (float32[n_items], the item's share of the users of
    its category's / brand's items, NaN for an unknown code) and the ``reference_time`` (latest
    interaction)."""

    log_users: np.ndarray
    log_recent_users: np.ndarray
    category: np.ndarray
    n_categories: int
    price: np.ndarray
    reference_time: pd.Timestamp | None
    brand: np.ndarray
    n_brands: int
    repeat_rate: np.ndarray
    category_pop_share: np.ndarray
    brand_pop_share: np.ndarray

    @classmethod
    def from_training(cls, training: TrainingSet) -> ItemStats:
        entries = training.entries
        n_items = entries.n_items
        ts = entries.last_interaction_at
        reference = ts.max() if len(ts) else None
        users = np.bincount(entries.cols, minlength=n_items)
        recent = np.zeros(n_items, dtype=np.int64)
        if reference is not None:
            keep = (ts >= reference - pd.Timedelta(days=RECENT_DAYS)).to_numpy()
            recent = np.bincount(entries.cols[keep], minlength=n_items)
        categories, n_categories = _codes(training.products["category"])
        brands, n_brands = _codes(training.products["brand"])
        price = pd.to_numeric(training.products["price"], errors="coerce").to_numpy(dtype=np.float64)
        price[~(price > 0)] = np.nan
        purchases = entries.purchase_counts()
        buyers = np.bincount(entries.cols, weights=purchases > 0, minlength=n_items)
        repeaters = np.bincount(entries.cols, weights=purchases > 1, minlength=n_items)
        repeat_rate = np.divide(repeaters, buyers, out=np.full(n_items, np.nan), where=buyers > 0)
        return cls(
            np.log1p(users).astype(np.float32),
            np.log1p(recent).astype(np.float32),
            categories,
            n_categories,
            price,
            reference,
            brands,
            n_brands,
            repeat_rate.astype(np.float32),
            _share_within(users, categories),
            _share_within(users, brands),
        )


def _share_within(users: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """float32[n_items]: each item's share of the ``users`` (per item) of the items with its code; NaN
    for code ``-1``."""
    known = codes >= 0
    totals = np.bincount(codes[known], weights=users[known], minlength=1)
    share = np.full(len(codes), np.nan)
    share[known] = users[known] / np.maximum(totals[codes[known]], 1.0)
    return share.astype(np.float32)


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """(int64 code of each value, ``-1`` for missing or empty; number of distinct values)."""
    text = values.fillna("").astype(str)
    codes, uniques = pd.factorize(text.mask(text == ""))
    return codes.astype(np.int64), len(uniques)


@dataclass(frozen=True)
class CandidateBlock:
    """Candidates of one block of users: ``rows`` (int64[m], rows of the history, sorted), ``cols``
    (int64[m], catalogue columns) and the generator ``features`` (name → float32[m])."""

    rows: np.ndarray
    cols: np.ndarray
    features: dict[str, np.ndarray]


def candidate_block(
    generators: Mapping[str, Recommender], history: UserHistory, rows: np.ndarray, n: int, exclude: ExcludePolicy
) -> CandidateBlock:
    """The union of each generator's top ``n`` for the users ``history.user_ids[rows]`` (``rows``:
    int64[b]) with every generator's score and rank of every candidate pair."""
    mask = history.exclusion(exclude)
    n_items = history.n_items
    blocks, picks = {}, []
    for name, generator in generators.items():
        scores = np.array(generator.score(history, rows), dtype=np.float32)
        blocks[name] = scores
        usable = np.where(scores == 0, -np.inf, scores)
        picked, _ = top_k(usable, min(n, n_items), mask, None if mask is None else rows)
        picks.append(picked)
    local = np.repeat(np.arange(len(rows), dtype=np.int64)[:, None], min(n, n_items), axis=1)
    keys = np.concatenate([(local * n_items + p)[p >= 0] for p in picks]) if picks else np.zeros(0, np.int64)
    keys = np.unique(keys)
    pair_local, cols = keys // n_items, keys % n_items
    features: dict[str, np.ndarray] = {}
    for (name, scores), picked in zip(blocks.items(), picks, strict=True):
        value = scores[pair_local, cols]
        features[f"{name}_score"] = np.where(np.isfinite(value), value, np.nan).astype(np.float32)
        rank = np.full((len(rows), n_items), n, dtype=np.int32)
        r, c = np.nonzero(picked >= 0)
        rank[r, picked[r, c]] = c
        features[f"{name}_rank"] = rank[pair_local, cols].astype(np.float32)
    return CandidateBlock(rows[pair_local], cols, features)


def _gather(matrix: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float64[m]: ``matrix[rows[i], cols[i]]`` (0 where not stored)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(matrix[rows, cols], dtype=np.float64).ravel()


@dataclass(frozen=True)
class UserContext:
    """What the pair, user and cross features of one history read, built once per history and item
    statistics (:func:`user_context`): the users × items CSRs ``binary`` (1 per pair), ``purchases`` and
    ``ages`` (days from the pair's last interaction to the user's latest, plus 1, so that 0 means
    unseen); per user (float64[n_users]) ``n_items``, ``days_inactive`` (NaN without history or
    reference time), ``mean_price`` (NaN without a priced item) and ``repeat_share`` (NaN without a
    purchase); ``category_counts`` / ``brand_counts`` (users × categories / brands CSR of the user's
    items per category / brand) and the ``stats`` it was built with."""

    binary: sparse.csr_matrix
    purchases: sparse.csr_matrix
    ages: sparse.csr_matrix
    n_items: np.ndarray
    days_inactive: np.ndarray
    mean_price: np.ndarray
    repeat_share: np.ndarray
    category_counts: sparse.csr_matrix
    brand_counts: sparse.csr_matrix
    stats: ItemStats

    @classmethod
    def build(cls, history: UserHistory, stats: ItemStats) -> UserContext:
        binary = history.binary_matrix()
        age = ((history.reference - history.last_interaction_at).dt.total_seconds() / 86_400.0).to_numpy()
        latest = history.reference.groupby(history.rows).max()
        inactive = np.full(history.n_users, np.nan)
        if stats.reference_time is not None and len(latest):
            inactive[latest.index.to_numpy()] = (stats.reference_time - latest).dt.total_seconds().to_numpy() / 86_400.0
        priced = np.isfinite(stats.price)
        total = binary @ np.where(priced, stats.price, 0.0)
        count = binary @ priced.astype(np.float64)
        purchases = history.purchase_counts()
        bought = np.bincount(history.rows, weights=purchases > 0, minlength=history.n_users)
        repeated = np.bincount(history.rows, weights=purchases > 1, minlength=history.n_users)
        return cls(
            binary=binary,
            purchases=pair_matrix(history.rows, history.cols, purchases, history.shape),
            ages=pair_matrix(history.rows, history.cols, np.nan_to_num(age) + 1.0, history.shape),
            n_items=np.diff(binary.indptr).astype(np.float64),
            days_inactive=inactive,
            mean_price=np.divide(total, count, out=np.full(len(total), np.nan), where=count > 0),
            repeat_share=np.divide(repeated, bought, out=np.full(history.n_users, np.nan), where=bought > 0),
            category_counts=sparse.csr_matrix(binary @ _one_hot(stats.category, stats.n_categories)),
            brand_counts=sparse.csr_matrix(binary @ _one_hot(stats.brand, stats.n_brands)),
            stats=stats,
        )


def _one_hot(codes: np.ndarray, n_codes: int) -> sparse.csr_matrix:
    """Items × codes CSR with a 1 at each item's code (no entry for code ``-1``)."""
    known = np.flatnonzero(codes >= 0)
    return pair_matrix(known, codes[known], np.ones(len(known)), (len(codes), max(n_codes, 1)))


def user_context(history: UserHistory, stats: ItemStats) -> UserContext:
    """The :class:`UserContext` of ``history`` and ``stats``, built once and kept on the history (the
    ranker reads it for every block of users: building it per block would cost the whole history each
    time)."""
    context = history.cached(("ranker_user_context", id(stats)), lambda: UserContext.build(history, stats))
    return context if context.stats is stats else UserContext.build(history, stats)


def history_features(
    history: UserHistory, rows: np.ndarray, cols: np.ndarray, stats: ItemStats
) -> dict[str, np.ndarray]:
    """Pair, user, item and cross features (see the module docstring) of the pairs
    (``history.user_ids[rows]``, ``history.item_ids[cols]``); name → float32[m]."""
    context = user_context(history, stats)
    n_user_items = context.n_items[rows]
    seen_age = _gather(context.ages, rows, cols)
    out = {
        "pair_seen": _gather(context.binary, rows, cols),
        "pair_purchases": _gather(context.purchases, rows, cols),
        "pair_age_days": np.where(seen_age > 0, seen_age - 1.0, np.nan),
        "user_n_items": n_user_items,
        "user_days_inactive": context.days_inactive[rows],
        "user_repeat_share": context.repeat_share[rows],
        "item_log_users": stats.log_users[cols],
        "item_log_recent_users": stats.log_recent_users[cols],
        "item_repeat_rate": stats.repeat_rate[cols],
        "item_category_pop_share": stats.category_pop_share[cols],
        "item_brand_pop_share": stats.brand_pop_share[cols],
        "category_share": _share(context.category_counts, rows, stats.category[cols], n_user_items),
        "brand_share": _share(context.brand_counts, rows, stats.brand[cols], n_user_items),
        # candidate price / mean price of the user's priced items (NaN when either is unknown)
        "price_ratio": stats.price[cols] / context.mean_price[rows],
    }
    return {name: np.asarray(value, dtype=np.float32) for name, value in out.items()}


def _share(counts: sparse.csr_matrix, rows: np.ndarray, codes: np.ndarray, n_user_items: np.ndarray) -> np.ndarray:
    """Share of the user's items that carry the candidate's code (``counts``: users × codes); NaN for an
    unknown code (``-1``) or a user without history."""
    share = _gather(counts, rows, np.maximum(codes, 0)) / np.maximum(n_user_items, 1.0)
    return np.where((codes >= 0) & (n_user_items > 0), share, np.nan)


def frame_columns(frame: pd.DataFrame | None, ids: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """The numeric columns of ``frame`` (indexed by id) for ``ids`` as ``<prefix><column>`` → float32[len(ids)];
    unknown ids get NaN; None gives no columns."""
    if frame is None or frame.empty:
        return {}
    numeric = frame.select_dtypes(include=["number", "bool"]).astype(np.float32)
    positions = pd.Index(numeric.index.astype(str)).get_indexer(pd.Index(np.asarray(ids, dtype=object).astype(str)))
    values = numeric.to_numpy()[np.maximum(positions, 0)] if len(numeric) else np.zeros((len(ids), numeric.shape[1]))
    values[positions < 0] = np.nan
    return {f"{prefix}{column}": values[:, j].astype(np.float32) for j, column in enumerate(numeric.columns)}
