"""Buy-again scores: the user's own recency-weighted purchase counts, for feeds that allow repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def purchase_weights(purchases: pd.Series | np.ndarray, recency: np.ndarray) -> np.ndarray:
    """``purchases × recency`` per rating row (0 for rows without a purchase), float32."""
    counts = pd.to_numeric(pd.Series(np.asarray(purchases)), errors="coerce").fillna(0).clip(lower=0).to_numpy()
    return (counts * np.asarray(recency, dtype=np.float64)).astype(np.float32)


def buy_again_matrix(
    user_rows: np.ndarray, item_cols: np.ndarray, weights: np.ndarray, n_users: int, n_items: int
) -> sparse.csr_matrix:
    """Users × items sparse matrix of recency-weighted purchase counts (zero entries dropped)."""
    keep = np.asarray(weights) > 0
    m = sparse.csr_matrix(
        (np.asarray(weights, dtype=np.float32)[keep], (user_rows[keep], item_cols[keep])),
        shape=(n_users, n_items),
    )
    m.sum_duplicates()
    return m


def buy_again_scores(matrix: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Dense float32 ``[len(rows), n_items]`` block of the buy-again matrix."""
    return np.asarray(matrix[rows].toarray(), dtype=np.float32)
