"""Ranking and rating metrics, vectorised over users.

Ranking metrics take ``top``: int[b, K] item indices per user (best first, ``-1`` = empty slot), and
``relevant``: a CSR (b × n_items) whose row ``u`` holds the relevant items of the user of row ``u``.
They average over users with at least one relevant item (users with none are undefined for
recall / nDCG and are left out of every ranking metric so the metrics share one denominator).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _check(top: np.ndarray, relevant: sp.csr_matrix, k: int | None) -> tuple[np.ndarray, sp.csr_matrix, int]:
    top = np.asarray(top)
    if top.ndim != 2:
        raise ValueError("top must be a 2-D array of item indices")
    relevant = sp.csr_matrix(relevant)
    if relevant.shape[0] != top.shape[0]:
        raise ValueError(f"relevant has {relevant.shape[0]} rows, top has {top.shape[0]}")
    k = top.shape[1] if k is None else int(k)
    if not 0 < k <= top.shape[1]:
        raise ValueError(f"k={k} outside 1..{top.shape[1]}")
    return top[:, :k], relevant, k


def hit_matrix(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """bool[b, K]: whether ``top[u, j]`` is one of user ``u``'s relevant items (``-1`` never is)."""
    top = np.asarray(top, dtype=np.int64)
    relevant = sp.csr_matrix(relevant)
    n_items = max(relevant.shape[1], 1)
    rel_rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    rel_keys = np.sort(rel_rows * n_items + relevant.indices.astype(np.int64))
    top_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    if rel_keys.size == 0:
        return np.zeros(top.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(rel_keys, top_keys), rel_keys.size - 1)
    return (rel_keys[pos] == top_keys) & (top >= 0)


def _n_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    """Distinct relevant items per row."""
    rel = relevant.copy()
    rel.sum_duplicates()
    rel.eliminate_zeros()
    return np.diff(rel.indptr)


def _per_user(top: np.ndarray, relevant: sp.csr_matrix, k: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    top, relevant, k = _check(top, relevant, k)
    hits = hit_matrix(top, relevant)
    n_rel = _n_relevant(relevant)
    mask = n_rel > 0
    return hits[mask], n_rel[mask], k


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def _precision(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    return _mean(hits.sum(axis=1) / k)


def _recall(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    return _mean(hits.sum(axis=1) / n_rel)


def _ndcg(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits.astype(np.float64) @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_rel, k)]
    return _mean(dcg / ideal)


def _map(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    h = hits.astype(np.float64)
    prec_at_j = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return _mean((prec_at_j * h).sum(axis=1) / np.minimum(n_rel, k))


def _hit_rate(hits: np.ndarray, n_rel: np.ndarray, k: int) -> float:
    return _mean(np.asarray(hits.any(axis=1), dtype=np.float64))


def precision_at_k(top: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> float:
    """Mean over users of (relevant items in the top k) / k."""
    return _precision(*_per_user(top, relevant, k))


def recall_at_k(top: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> float:
    """Mean over users of (relevant items in the top k) / (relevant items)."""
    return _recall(*_per_user(top, relevant, k))


def ndcg_at_k(top: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> float:
    """Mean binary nDCG@k: DCG = Σ hit_j / log2(j + 2), ideal DCG puts min(n_rel, k) hits first."""
    return _ndcg(*_per_user(top, relevant, k))


def map_at_k(top: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> float:
    """Mean AP@k: Σ_j precision@j · hit_j / min(n_rel, k)."""
    return _map(*_per_user(top, relevant, k))


def hit_rate_at_k(top: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> float:
    """Share of users with at least one relevant item in the top k."""
    return _hit_rate(*_per_user(top, relevant, k))


def ranking_metrics(top: np.ndarray, relevant: sp.csr_matrix, k: int) -> dict[str, float]:
    """All ranking metrics at ``k`` as ``{"precision_at_10": …, …}`` (hits computed once)."""
    per_user = _per_user(top, relevant, k)
    return {
        f"precision_at_{k}": _precision(*per_user),
        f"recall_at_{k}": _recall(*per_user),
        f"ndcg_at_{k}": _ndcg(*per_user),
        f"map_at_{k}": _map(*per_user),
        f"hit_rate_at_{k}": _hit_rate(*per_user),
    }


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error (``nan`` for no pairs)."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2))) if diff.size else float("nan")


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error (``nan`` for no pairs)."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(diff))) if diff.size else float("nan")


def user_coverage(user_rows: np.ndarray) -> float:
    """Share of users the model knows (row index ``>= 0``), i.e. can personalise for."""
    rows = np.asarray(user_rows)
    return float((rows >= 0).mean()) if rows.size else 0.0


def catalog_coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one top-k list."""
    top = np.asarray(top)
    if n_items <= 0:
        return 0.0
    return float(np.unique(top[top >= 0]).size / n_items)
