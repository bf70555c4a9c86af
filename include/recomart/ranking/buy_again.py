"""Buy-again scores: the user's own recency-weighted purchase counts, for feeds that allow repeats.

Nothing is fitted: the counts come from the history passed at ranking time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from recomart.ranking.base import Recommender, TrainingSet
from recomart.ranking.history import HISTORY_HALF_LIFE_DAYS, UserHistory, pair_matrix


def buy_again_matrix(history: UserHistory, half_life_days: float) -> sparse.csr_matrix:
    """Users × items CSR of ``purchases × recency`` (float32, zero entries dropped)."""
    weights = (history.purchase_counts() * history.recency(half_life_days).astype(np.float64)).astype(np.float32)
    keep = weights > 0
    return pair_matrix(history.rows[keep], history.cols[keep], weights[keep], history.shape)


class BuyAgain(Recommender):
    """Recency-weighted purchase counts of the user's own history (``half_life_days``; ``None``: the
    history's :data:`HISTORY_HALF_LIFE_DAYS`)."""

    def __init__(self, *, half_life_days: float | None = None) -> None:
        self.half_life_days = None if half_life_days is None else float(half_life_days)
        self.item_ids = np.zeros(0, dtype=object)

    @property
    def effective_half_life_days(self) -> float:
        return self.half_life_days or HISTORY_HALF_LIFE_DAYS

    def fit(self, training: TrainingSet) -> BuyAgain:
        self.item_ids = training.item_ids
        return self

    def matrix(self, history: UserHistory) -> sparse.csr_matrix:
        """The users × items buy-again matrix of ``history`` (cached on the history)."""
        half_life = self.effective_half_life_days
        return history.cached(("buy_again", half_life), lambda: buy_again_matrix(history, half_life))

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix(history)[rows].toarray(), dtype=np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {}, {"half_life_days": self.half_life_days}

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> BuyAgain:
        component = cls(half_life_days=settings.get("half_life_days"))
        component.item_ids = item_ids
        return component
