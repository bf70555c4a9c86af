"""The interaction history every component ranks against, and its alignment on a catalogue.

**History contract.** A history is a data frame with one row per user × item (the grain of
``marts.user_item_ratings``) and the columns :data:`HISTORY_COLUMNS`:

- ``user_id``, ``item_id``: text ids;
- ``purchases``: purchases of the pair (0 when the user only viewed or carted it);
- ``last_interaction_at``: the pair's latest interaction (UTC).

Extra columns (``rating``, ``interactions``) are ignored by ranking and used by training.  Seen
items, buy-again counts, item-to-item and content profiles are always derived from the history
passed at ranking time, never from sets frozen when the model was fitted.

Recency is measured from each user's *own* latest interaction, so a user's history keeps its shape
however long ago they were active (the per-user normalisation of the blend would undo a global decay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from scipy import sparse

HISTORY_COLUMNS = ("user_id", "item_id", "purchases", "last_interaction_at")
#: half-life of the history weights behind item-to-item and content profiles
HISTORY_HALF_LIFE_DAYS = 30.0

ExcludePolicy = Literal["purchased", "interacted", "none"]
EXCLUDE_POLICIES: tuple[str, ...] = ("purchased", "interacted", "none")

T = TypeVar("T")


def exclusion_for(repeat_purchases: bool) -> ExcludePolicy:
    """The exclusion policy of a feed: purchased items are recommendable again only if it allows repeats."""
    return "none" if repeat_purchases else "purchased"


def as_history(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` in the history contract: text ids, ``last_interaction_at`` (UTC; taken from
    ``event_timestamp`` when absent, else the epoch) and ``purchases`` (0 when absent)."""
    out = frame.copy()
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    if "last_interaction_at" not in out:
        out["last_interaction_at"] = out["event_timestamp"] if "event_timestamp" in out else pd.Timestamp(0, tz="UTC")
    out["last_interaction_at"] = pd.to_datetime(out["last_interaction_at"], utc=True)
    if "purchases" not in out:
        out["purchases"] = 0
    return out


def sorted_history(frame: pd.DataFrame) -> pd.DataFrame:
    """The history in the contract, sorted by user then item (a fixed order makes every float sum reproducible)."""
    history = as_history(frame)
    return history.sort_values(["user_id", "item_id"], kind="mergesort").reset_index(drop=True)


def recency_weights(
    last_interaction_at: pd.Series, reference: pd.Series | pd.Timestamp, *, half_life_days: float
) -> np.ndarray:
    """``0.5 ** (age_days / half_life_days)`` (float32) with ages measured from ``reference``."""
    ts = pd.to_datetime(last_interaction_at, utc=True)
    age_days = ((reference - ts).dt.total_seconds() / 86_400.0).fillna(0.0).clip(lower=0.0)
    return np.power(0.5, age_days.to_numpy(dtype=np.float64) / half_life_days).astype(np.float32)


def pair_matrix(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int], *, binary: bool = False
) -> sparse.csr_matrix:
    """CSR of ``shape`` holding ``values`` at ``(rows, cols)``; duplicates are summed (or set to 1 when
    ``binary``)."""
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1
    return matrix


@dataclass(eq=False)
class UserHistory:
    """The history of the users being ranked, aligned on a catalogue.

    ``user_ids`` (object[n_users]) are the users in request order and ``item_ids`` (object[n_items],
    sorted) the catalogue.  Entry ``e`` of the history is user ``rows[e]`` × item ``cols[e]``, in the
    order of :func:`sorted_history`; pairs of other users or of items outside the catalogue are left
    out.  ``segments`` (object[n_users] or None) are the users' segments for cold start.  Derived
    matrices are computed once per object (:meth:`cached`).
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    last_interaction_at: pd.Series
    reference: pd.Series
    purchases: pd.Series
    segments: np.ndarray | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def align(
        cls,
        history: pd.DataFrame,
        user_ids: Sequence[str] | np.ndarray,
        item_ids: np.ndarray,
        segments: Sequence[Any] | np.ndarray | None = None,
    ) -> UserHistory:
        """``history`` (the contract above) aligned on ``user_ids`` (unique) × ``item_ids`` (sorted)."""
        users = np.asarray(user_ids, dtype=object)
        frame = sorted_history(history)
        ts = pd.to_datetime(frame["last_interaction_at"], utc=True)
        reference = ts.groupby(frame["user_id"].to_numpy()).transform("max")
        rows = pd.Index(users).get_indexer(pd.Index(frame["user_id"].to_numpy(dtype=object))).astype(np.int64)
        cols = pd.Index(item_ids).get_indexer(pd.Index(frame["item_id"].to_numpy(dtype=object))).astype(np.int64)
        keep = (rows >= 0) & (cols >= 0)
        return cls(
            user_ids=users,
            item_ids=np.asarray(item_ids, dtype=object),
            rows=rows[keep],
            cols=cols[keep],
            last_interaction_at=ts[keep].reset_index(drop=True),
            reference=reference[keep].reset_index(drop=True),
            purchases=frame["purchases"][keep].reset_index(drop=True),
            segments=None if segments is None else np.asarray(segments, dtype=object),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    @property
    def has_history(self) -> np.ndarray:
        """bool[n_users]: whether the user has at least one pair in the catalogue."""
        return np.bincount(self.rows, minlength=self.n_users) > 0

    def cached(self, key: Any, build: Callable[[], T]) -> T:
        """``build()`` once per ``key`` for this history."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def recency(self, half_life_days: float = HISTORY_HALF_LIFE_DAYS) -> np.ndarray:
        """float32 recency weight of each entry (see :func:`recency_weights`)."""
        return self.cached(
            ("recency", half_life_days),
            lambda: recency_weights(self.last_interaction_at, self.reference, half_life_days=half_life_days),
        )

    def weight_matrix(self, half_life_days: float = HISTORY_HALF_LIFE_DAYS) -> sparse.csr_matrix:
        """Users × items CSR of recency weights (float32)."""
        return self.cached(
            ("weights", half_life_days),
            lambda: pair_matrix(self.rows, self.cols, self.recency(half_life_days), self.shape),
        )

    def binary_matrix(self) -> sparse.csr_matrix:
        """Users × items CSR (float32) with a 1 for every pair of the history."""
        return self.cached(
            "binary",
            lambda: pair_matrix(self.rows, self.cols, np.ones(len(self.rows), np.float32), self.shape, binary=True),
        )

    def purchase_counts(self) -> np.ndarray:
        """float64 purchases of each entry (missing or negative counts as 0)."""
        counts = pd.to_numeric(self.purchases, errors="coerce").fillna(0).clip(lower=0)
        return counts.to_numpy(dtype=np.float64)

    def exclusion(self, policy: ExcludePolicy) -> sparse.csr_matrix | None:
        """Users × items int8 CSR of the cells never recommended under ``policy`` (None for ``none``)."""
        if policy not in EXCLUDE_POLICIES:
            raise ValueError(f"unknown exclude policy {policy!r}")
        if policy == "none":
            return None
        return self.cached(("exclusion", policy), lambda: self._exclusion(policy))

    def _exclusion(self, policy: ExcludePolicy) -> sparse.csr_matrix:
        if policy == "purchased":
            keep = pd.to_numeric(self.purchases, errors="coerce").fillna(0).to_numpy() > 0
        else:
            keep = np.ones(len(self.rows), dtype=bool)
        ones = np.ones(int(keep.sum()), dtype=np.int8)
        return pair_matrix(self.rows[keep], self.cols[keep], ones, self.shape, binary=True)

    def segment_values(self) -> pd.Series:
        """The users' segments as a Series (missing: NaN)."""
        values = self.segments if self.segments is not None else np.full(self.n_users, np.nan, dtype=object)
        return pd.Series(values, dtype=object)


def excluded_cells(exclude: sparse.csr_matrix | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block row, item column) of the excluded cells of the users ``rows``."""
    if exclude is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    block = exclude[rows]
    block_rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    return block_rows, block.indices.astype(np.int64)
