"""The interface of every ranking component, modelled on ``implicit``'s ``RecommenderBase``.

``fit(training_set)`` learns what the component keeps (factors, an item similarity, TF-IDF vectors,
popularity tables); ``recommend(user_ids, history, k, filter_seen)`` ranks the catalogue for users
given their *current* history; ``similar_items(item_ids, k)`` gives item neighbours where the
component has a notion of them.  A component's scores are always over its catalogue
(``item_ids``, sorted): ``score(history, rows)`` returns one dense float32 row per user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recomart.ranking.history import ExcludePolicy, UserHistory, sorted_history
from recomart.ranking.scoring import top_k


@dataclass(frozen=True)
class RankedItems:
    """Top-k per query row: ``item_ids`` object[n, k] (``None`` pads) and ``scores`` float32[n, k]
    (``-inf`` pads), best first."""

    item_ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_columns(cls, catalogue: np.ndarray, columns: np.ndarray, scores: np.ndarray) -> RankedItems:
        """Item ids of catalogue ``columns`` (int[n, k], ``-1`` = empty)."""
        ids = np.asarray(catalogue, dtype=object)[np.where(columns >= 0, columns, 0)]
        ids[columns < 0] = None
        return cls(ids, np.asarray(scores, dtype=np.float32))


def default_products(item_ids: Sequence[str]) -> pd.DataFrame:
    """A catalogue with ids only (content then has nothing to go on and scores zero)."""
    return pd.DataFrame(
        {"item_id": list(item_ids), "title": "", "description": "", "category": "", "brand": "", "price": np.nan}
    )


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """What components are fitted on, aligned on one catalogue.

    ``history``: the training pairs (:mod:`recomart.ranking.history` contract, plus ``rating`` for
    the SVD), sorted by user then item; ``item_ids``: the catalogue, sorted (products and rated
    items); ``products``: one row per catalogue item (``title, description, category, brand, price``,
    optional ``price_band``; NaN for items without a product row); ``segments``: ``user_id`` →
    segment; ``entries``: the history aligned on every known user (segments and history) × the
    catalogue.
    """

    history: pd.DataFrame
    item_ids: np.ndarray
    products: pd.DataFrame
    segments: pd.Series
    entries: UserHistory

    @classmethod
    def build(
        cls, history: pd.DataFrame, products: pd.DataFrame | None = None, users: pd.DataFrame | None = None
    ) -> TrainingSet:
        """From a history frame, ``products`` (default: ids only) and ``users`` (``user_id, segment``)."""
        frame = sorted_history(history)
        if products is None:
            products = default_products(sorted(frame["item_id"].unique()))
        products = products.dropna(subset=["item_id"]).drop_duplicates("item_id")
        users = pd.DataFrame({"user_id": []}) if users is None else users
        users = users.dropna(subset=["user_id"]).drop_duplicates("user_id")
        user_ids = np.array(sorted(set(users["user_id"]).union(frame["user_id"])), dtype=object)
        item_ids = np.array(sorted(set(products["item_id"]).union(frame["item_id"])), dtype=object)
        segments = users.set_index("user_id")["segment"] if "segment" in users else pd.Series(dtype=object)
        catalogue = products.set_index("item_id").reindex(item_ids).reset_index(drop=True)
        entries = UserHistory.align(frame, user_ids, item_ids, segments.reindex(user_ids).to_numpy())
        return cls(frame, item_ids, catalogue, segments, entries)


class Recommender(ABC):
    """One ranking component: fitted on a :class:`TrainingSet`, ranking its catalogue ``item_ids``."""

    #: the catalogue every score row is over (sorted); set by :meth:`fit`
    item_ids: np.ndarray

    @abstractmethod
    def fit(self, training: TrainingSet) -> Recommender:
        """Learn the component's state from ``training``; returns ``self``."""

    @abstractmethod
    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items]: scores of the users ``history.user_ids[rows]`` over the catalogue."""

    def recommend(
        self,
        user_ids: Sequence[str] | np.ndarray,
        history: pd.DataFrame,
        k: int = 10,
        filter_seen: bool = True,
        *,
        block_size: int = 2048,
    ) -> RankedItems:
        """The ``k`` best items of each user by :meth:`score`; with ``filter_seen`` the user's history
        items are never returned.  Returns :class:`RankedItems` with one row per user."""
        aligned = UserHistory.align(history, pd.unique(np.asarray(user_ids, dtype=object)), self.item_ids)
        return self.recommend_aligned(aligned, k, "interacted" if filter_seen else "none", block_size=block_size)

    def recommend_aligned(
        self, history: UserHistory, k: int, exclude: ExcludePolicy, *, block_size: int = 2048
    ) -> RankedItems:
        """:meth:`recommend` for an already aligned history and an explicit exclusion policy."""
        mask = history.exclusion(exclude)
        columns = np.full((history.n_users, k), -1, dtype=np.int32)
        scores = np.full((history.n_users, k), -np.inf, dtype=np.float32)
        for start in range(0, history.n_users, block_size):
            rows = np.arange(start, min(start + block_size, history.n_users))
            block = self.score(history, rows)
            kk = min(k, block.shape[1])
            if kk:
                picked, values = top_k(block, kk, mask, None if mask is None else rows)
                columns[rows, :kk], scores[rows, :kk] = picked, values
        return RankedItems.from_columns(self.item_ids, columns, scores)

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        """The ``k`` most similar catalogue items of each item (itself excluded); unknown items get an
        empty row.  Components without a notion of item similarity raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no item similarity")

    def item_rows(self, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Catalogue position of each item id (``-1`` unknown)."""
        return (
            pd.Index(self.item_ids)
            .get_indexer(pd.Index(np.asarray(item_ids, dtype=object).astype(str)))
            .astype(np.int64)
        )

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-safe settings) that :meth:`from_state` rebuilds the fitted component from."""
        raise NotImplementedError(f"{type(self).__name__} cannot be stored")


def top_neighbours(rows_of: Callable[[np.ndarray], Any], rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best positive neighbours of each item row as (columns int32[n, k], values float32[n, k]).

    ``rows_of(known_rows)`` returns the (dense or sparse) similarity rows of the known items; an item's
    own column is never picked and unknown rows (``-1``) stay empty (``-1`` / ``-inf``).
    """
    columns = np.full((len(rows), k), -1, dtype=np.int32)
    values = np.full((len(rows), k), -np.inf, dtype=np.float32)
    known = np.flatnonzero(rows >= 0)
    if len(known) == 0 or k <= 0:
        return columns, values
    block = rows_of(rows[known])
    dense = np.array(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float32)
    dense[np.arange(len(known)), rows[known]] = -np.inf
    dense[dense <= 0] = -np.inf  # only positive similarities are neighbours
    kk = min(k, dense.shape[1])
    picked, scores = top_k(dense, kk)
    columns[known, :kk], values[known, :kk] = picked, scores
    return columns, values
