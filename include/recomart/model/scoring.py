"""Batch scoring with the factors: one GEMM per user block, then a compiled top-k selection.

``surprise``'s per-pair ``predict`` (and ``build_anti_testset``) cost hours on a real catalogue
(surprise#261, #368); here a block of users is scored against every item with a single matrix
product ``[pu, 1, mu+bu] @ [qi, bi, 1].T`` and the k best unmasked items of each row are picked
by a numba kernel that never sorts the whole row.
"""

from __future__ import annotations

from collections.abc import Iterator

import numba
import numpy as np
import scipy.sparse as sp

from recomart.model.factors import FactorModel

DEFAULT_BLOCK_SIZE = 4096


def iter_blocks(n: int, block_size: int) -> Iterator[slice]:
    """Consecutive ``slice`` objects covering ``range(n)`` with at most ``block_size`` elements each."""
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    for start in range(0, n, block_size):
        yield slice(start, min(start + block_size, n))


def _user_matrix_augmented(model: FactorModel, user_rows: np.ndarray) -> np.ndarray:
    """``[pu, 1, mu + bu]`` per row; an unknown user (-1) gets ``[0, 1, mu]``, i.e. ``mu + bi``."""
    rows = np.asarray(user_rows, dtype=np.int64)
    known = rows >= 0
    safe = np.where(known, rows, 0)
    k = model.n_factors
    aug = np.empty((len(rows), k + 2), dtype=np.float32)
    aug[:, :k] = model.user_factors[safe]
    aug[:, k] = 1.0
    aug[:, k + 1] = np.float32(model.global_mean) + model.user_bias[safe]
    if not known.all():
        aug[~known, :k] = 0.0
        aug[~known, k + 1] = np.float32(model.global_mean)
    return aug


def svd_scores(model: FactorModel, user_rows: np.ndarray) -> np.ndarray:
    """Unclipped ``mu + bu + bi + pu·qi`` of ``user_rows`` against every item (float32[b, n_items]).

    A row of ``-1`` (unknown user) gets ``mu + bi``, dropping the missing terms as ``SVD.estimate``
    does.  Callers bound memory by passing one block of users at a time (see :func:`iter_blocks`).
    """
    return _user_matrix_augmented(model, user_rows) @ model.item_matrix_augmented().T


def pair_scores(model: FactorModel, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
    """Unclipped estimate for aligned (user, item) rows (float64); ``-1`` drops that side's terms."""
    u = np.asarray(user_rows, dtype=np.int64)
    i = np.asarray(item_rows, dtype=np.int64)
    ku, ki = u >= 0, i >= 0
    su, si = np.where(ku, u, 0), np.where(ki, i, 0)
    est = np.full(len(u), model.global_mean, dtype=np.float64)
    est += np.where(ku, model.user_bias[su], 0.0)
    est += np.where(ki, model.item_bias[si], 0.0)
    dots = np.einsum("ij,ij->i", model.user_factors[su].astype(np.float64), model.item_factors[si].astype(np.float64))
    est += np.where(ku & ki, dots, 0.0)
    return est


@numba.njit(parallel=True, cache=True, nogil=True)
def _top_k_kernel(scores, k, ex_indptr, ex_indices, ex_rows, out_idx, out_val):  # pragma: no cover - jit
    n_rows, n_cols = scores.shape
    for b in numba.prange(n_rows):
        row = scores[b]
        vals = out_val[b]
        idxs = out_idx[b]
        r = ex_rows[b]
        p = 0
        end = 0
        if r >= 0:
            p = ex_indptr[r]
            end = ex_indptr[r + 1]
        thr = -np.inf  # a candidate must beat this; NaN and -inf never do
        count = 0
        lo = 0
        while True:
            # scan the gap up to the next masked column (mask rows are sorted) with a tight loop
            hi = ex_indices[p] if p < end else n_cols
            for j in range(lo, hi):
                s = row[j]
                if s > thr:
                    if count < k:
                        pos = count
                        count += 1
                    else:
                        pos = k - 1
                    # insertion into the descending buffer; ties keep the lower column first
                    while pos > 0 and vals[pos - 1] < s:
                        vals[pos] = vals[pos - 1]
                        idxs[pos] = idxs[pos - 1]
                        pos -= 1
                    vals[pos] = s
                    idxs[pos] = j
                    if count == k:
                        thr = vals[k - 1]
            if p >= end:
                break
            lo = max(lo, hi + 1)
            p += 1


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    exclude_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row, sorted by descending score (ties: lower column first).

    ``exclude`` is a CSR whose row ``exclude_rows[b]`` lists the columns row ``b`` may never select
    (``exclude_rows`` defaults to ``arange(b)``; a row index of ``-1`` masks nothing).  Rows with fewer
    than ``k`` selectable columns are padded with index ``-1`` and score ``-inf``; NaN and ``-inf``
    scores are never selected.
    Returns ``(int32[b, k], float32[b, k])``.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError("scores must be 2-D")
    n_rows, n_cols = scores.shape
    if k <= 0:
        raise ValueError("k must be positive")
    if exclude is None:
        indptr = np.zeros(1, dtype=np.int64)
        indices = np.zeros(0, dtype=np.int32)
        rows = np.full(n_rows, -1, dtype=np.int64)
    else:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape[1] != n_cols:
            raise ValueError(f"exclude has {exclude.shape[1]} columns, scores have {n_cols}")
        if not exclude.has_sorted_indices:
            exclude = exclude.sorted_indices()
        indptr = exclude.indptr.astype(np.int64, copy=False)
        indices = exclude.indices.astype(np.int32, copy=False)
        if exclude_rows is None:
            if exclude.shape[0] != n_rows:
                raise ValueError("exclude must have one row per score row when exclude_rows is None")
            rows = np.arange(n_rows, dtype=np.int64)
        else:
            rows = np.asarray(exclude_rows, dtype=np.int64)
            if rows.shape != (n_rows,):
                raise ValueError("exclude_rows must have one entry per score row")
            if rows.size and (rows.max() >= exclude.shape[0]):
                raise ValueError("exclude_rows points past the last row of exclude")
    out_idx = np.full((n_rows, k), -1, dtype=np.int32)
    out_val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    _top_k_kernel(scores, k, indptr, indices, rows, out_idx, out_val)
    return out_idx, out_val


def recommend_top_k(
    model: FactorModel,
    user_rows: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    exclude_rows: np.ndarray | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`svd_scores` + :func:`top_k` over user blocks; memory is bounded by ``block_size × n_items``.

    ``exclude_rows`` (aligned with ``user_rows``) selects each user's mask row in ``exclude``; it
    defaults to ``user_rows`` itself (mask rows indexed like the model's users).
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    if exclude is not None and exclude_rows is None:
        exclude_rows = user_rows
    idx = np.empty((len(user_rows), k), dtype=np.int32)
    val = np.empty((len(user_rows), k), dtype=np.float32)
    for block in iter_blocks(len(user_rows), block_size):
        scores = svd_scores(model, user_rows[block])
        rows = None if exclude is None else np.asarray(exclude_rows)[block]
        idx[block], val[block] = top_k(scores, k, exclude, rows)
    return idx, val


def static_top_k(
    item_scores: np.ndarray,
    n_rows: int,
    k: int,
    exclude: sp.csr_matrix | None = None,
    exclude_rows: np.ndarray | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one score vector shared by all rows (e.g. popularity), with per-row masks."""
    item_scores = np.asarray(item_scores, dtype=np.float32)
    idx = np.empty((n_rows, k), dtype=np.int32)
    val = np.empty((n_rows, k), dtype=np.float32)
    for block in iter_blocks(n_rows, block_size):
        n = block.stop - block.start
        scores = np.broadcast_to(item_scores, (n, len(item_scores)))
        rows = None if exclude_rows is None else np.asarray(exclude_rows)[block]
        if exclude is not None and rows is None:
            rows = np.arange(block.start, block.stop)
        idx[block], val[block] = top_k(scores, k, exclude, rows)
    return idx, val
