"""Batch scoring with the factors: a GEMM per user block, then a compiled top-k selection.

``surprise``'s per-pair ``predict`` (and ``build_anti_testset``) cost hours on a real catalogue
(surprise#261, #368).  :func:`recommend_top_k` scores a block of users against every item with one
product ``[pu, 1, 0] @ [qi, bi, 1].T`` into a reused buffer, and a numba kernel skips seen items and
keeps a pool of the best of each row in one read, never sorting a row, which
:mod:`recomart.ranking.exact_top_k` narrows to the exact k best; ``mu + bu`` (constant along a row)
is added to the kept scores only.  :func:`svd_scores` returns the full estimate matrix
``[pu, 1, mu+bu] @ [qi, bi, 1].T`` for callers that blend it with other components, through
:func:`recomart.ranking.gemm.row_stable_matmul`.  Neither result depends on the other users of the
block (or of the shard).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numba
import numpy as np
import scipy.sparse as sp

from recomart.ranking.exact_top_k import exact_top_k, keep_best, largest_norm, pool_width
from recomart.ranking.factors import FactorModel
from recomart.ranking.gemm import row_stable_matmul

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
    return row_stable_matmul(_user_matrix_augmented(model, user_rows), model.item_matrix_augmented().T)


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


CHUNK = 64  # columns tested at once (vectorised) against a row's running k-th best score


@numba.njit(inline="always")
def _mask_span(ex_indptr: np.ndarray, ex_rows: np.ndarray, b: int) -> tuple[int, int]:  # pragma: no cover - jit
    """``(start, end)`` of score row ``b``'s mask in the mask's indices (empty when its row is ``-1``)."""
    r = ex_rows[b]
    if r < 0:
        return 0, 0
    return ex_indptr[r], ex_indptr[r + 1]


@numba.njit(inline="always")
def _take_segment(  # pragma: no cover - jit
    seg: np.ndarray,
    lo: int,
    k: int,
    thr: float,
    ex_indices: np.ndarray,
    p: int,
    end: int,
    vals: np.ndarray,
    idxs: np.ndarray,
    count: int,
) -> tuple[float, int, int]:
    """Offer the columns ``lo + j`` of ``seg`` to the row's best-first buffers: first one vectorised test
    of the whole segment against the running k-th best ``thr``, then, only if some column passes, one
    column at a time (the mask pointer ``p`` advanced lazily up to ``end``).  Returns the new
    ``(thr, p, count)``.  NaN never passes ``> thr``."""
    hit = 0
    for j in range(len(seg)):
        if seg[j] > thr:
            hit += 1
    if hit == 0:
        return thr, p, count
    for j in range(len(seg)):
        s = seg[j]
        if s > thr:
            col = lo + j
            while p < end and ex_indices[p] < col:
                p += 1
            if p < end and ex_indices[p] == col:
                continue
            count = keep_best(vals, idxs, count, s, col)
            if count == k:
                thr = vals[k - 1]
    return thr, p, count


@numba.njit(parallel=True, cache=True, nogil=True)
def _top_k_kernel(  # pragma: no cover - jit
    scores: np.ndarray,
    row_offset: np.ndarray,
    k: int,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    ex_rows: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    """Per row, the ``k`` best ``scores[b, j]`` outside the row's sorted mask.

    Each row is read once: a chunk of ``CHUNK`` columns is first tested in one vectorised pass
    against the running k-th best (``thr``); only chunks holding a candidate are scanned one column
    at a time (:func:`_take_segment`), so after the first few chunks almost every chunk costs one SIMD
    comparison.  ``row_offset[b]`` is added to the k selected values only.  ``thr`` starts at
    ``-inf``, so NaN and ``-inf`` are never picked.
    """
    n_rows, n_cols = scores.shape
    for b in numba.prange(n_rows):
        row = scores[b]
        vals = out_val[b]
        idxs = out_idx[b]
        p, end = _mask_span(ex_indptr, ex_rows, b)
        thr = np.float32(-np.inf)
        count = 0
        for lo in range(0, n_cols, CHUNK):
            seg = row[lo : lo + CHUNK]  # a 0-based slice lets LLVM vectorise the test
            thr, p, count = _take_segment(seg, lo, k, thr, ex_indices, p, end, vals, idxs, count)
        off = row_offset[b]
        for m in range(count):
            vals[m] = np.float32(np.float64(vals[m]) + off)


@numba.njit(parallel=True, cache=True, nogil=True)
def _weighted_top_k_kernel(  # pragma: no cover - jit
    parts: np.ndarray,
    used: np.ndarray,
    weights: np.ndarray,
    k: int,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    ex_rows: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    """:func:`_top_k_kernel` of ``Σ_c weights[c] · parts[used[c], b, j]``, summed chunk by chunk into a
    row-local buffer in float32 in the order of ``used`` (the sum numpy's ``total += w * part`` gives),
    so the weighted sum is never stored."""
    _, n_rows, n_cols = parts.shape
    for b in numba.prange(n_rows):
        vals = out_val[b]
        idxs = out_idx[b]
        p, end = _mask_span(ex_indptr, ex_rows, b)
        thr = np.float32(-np.inf)
        count = 0
        buffer = np.empty(CHUNK, dtype=np.float32)
        for lo in range(0, n_cols, CHUNK):
            seg = buffer[: min(CHUNK, n_cols - lo)]
            seg[:] = np.float32(0.0)
            for c in range(len(used)):
                part, weight = parts[used[c], b, lo : lo + len(seg)], weights[c]
                for j in range(len(seg)):
                    seg[j] += weight * part[j]
            thr, p, count = _take_segment(seg, lo, k, thr, ex_indices, p, end, vals, idxs, count)


def _mask_arrays(
    exclude: sp.csr_matrix | None, exclude_rows: np.ndarray | None, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr int64, sorted indices int32, row of each score row)`` for the kernel (-1: no mask)."""
    if exclude is None:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.full(n_rows, -1, dtype=np.int64)
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
        return indptr, indices, np.arange(n_rows, dtype=np.int64)
    rows = np.asarray(exclude_rows, dtype=np.int64)
    if rows.shape != (n_rows,):
        raise ValueError("exclude_rows must have one entry per score row")
    if rows.size and (rows.max() >= exclude.shape[0]):
        raise ValueError("exclude_rows points past the last row of exclude")
    return indptr, indices, rows


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
    indptr, indices, rows = _mask_arrays(exclude, exclude_rows, n_rows, n_cols)
    out_idx = np.full((n_rows, k), -1, dtype=np.int32)
    out_val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    _top_k_kernel(scores, np.zeros(n_rows), k, indptr, indices, rows, out_idx, out_val)
    return out_idx, out_val


def weighted_top_k(
    parts: np.ndarray,
    weights: Sequence[tuple[int, float]],
    k: int,
    exclude: sp.csr_matrix | None = None,
    exclude_rows: np.ndarray | None = None,
) -> np.ndarray:
    """The ``k`` best columns of each row of ``Σ w · parts[c]`` over ``(c, w)`` in ``weights`` order, as
    :func:`top_k` of that float32 sum would select them (the same sum, the same ties), without building
    it.  ``parts``: float32 ``[n_parts, rows, cols]``.  Returns the column indices ``int32[rows, k]``."""
    parts = np.ascontiguousarray(parts, dtype=np.float32)
    n_rows, n_cols = parts.shape[1:]
    if k <= 0:
        raise ValueError("k must be positive")
    used = np.array([c for c, _ in weights], dtype=np.int64)
    factors = np.array([w for _, w in weights], dtype=np.float32)
    indptr, indices, rows = _mask_arrays(exclude, exclude_rows, n_rows, n_cols)
    out_idx = np.full((n_rows, k), -1, dtype=np.int32)
    out_val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    _weighted_top_k_kernel(parts, used, factors, k, indptr, indices, rows, out_idx, out_val)
    return out_idx


def recommend_top_k(
    model: FactorModel,
    user_rows: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    exclude_rows: np.ndarray | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best unmasked items of each user by unclipped ``mu + bu + bi + pu·qi`` (as :func:`top_k`).

    Per user block: the float32 GEMM ``[pu, 1, 0] @ [qi, bi, 1].T = pu·qi + bi`` into a buffer allocated
    once (memory is bounded by ``block_size × n_items``), then the compiled selection reads each row
    once for a pool of candidates, which :func:`recomart.ranking.exact_top_k.exact_top_k` scores again
    exactly, so the k kept (and their scores) do not depend on the block; ``mu + bu`` is constant along
    a row, so it is added to the k kept scores only.  An
    unknown user (-1) gets ``mu + bi``.  ``exclude_rows`` (aligned with ``user_rows``) selects each user's
    mask row in ``exclude``; it defaults to ``user_rows`` itself.
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    if k <= 0:
        raise ValueError("k must be positive")
    n, n_items = len(user_rows), model.n_items
    if exclude is not None and exclude_rows is None:
        exclude_rows = user_rows
    indptr, indices, mask_rows = _mask_arrays(exclude, exclude_rows, n, n_items)
    known = user_rows >= 0
    safe = np.where(known, user_rows, 0)
    offsets = np.where(known, model.global_mean + model.user_bias[safe].astype(np.float64), model.global_mean)
    items = model.item_matrix_augmented()
    q_t, items64 = items.T, items.astype(np.float64)
    largest_item = largest_norm(items64)  # for the error bound of every block
    f = model.n_factors
    bs = max(1, min(block_size, n))
    users = np.zeros((bs, f + 2), dtype=np.float32)
    users[:, f] = 1.0  # picks up bi; column f + 1 stays 0 (mu + bu is added after the selection)
    scores = np.empty((bs, n_items), dtype=np.float32)
    width = pool_width(k, n_items)
    pool_idx, pool_val = np.empty((bs, width), dtype=np.int32), np.empty((bs, width), dtype=np.float32)
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    for block in iter_blocks(n, block_size):
        m = block.stop - block.start
        np.take(model.user_factors, safe[block], axis=0, out=users[:m, :f])
        users[:m, :f][~known[block]] = 0.0
        np.matmul(users[:m], q_t, out=scores[:m])
        pool_idx[:m], pool_val[:m] = -1, -np.inf
        mask = (indptr, indices, mask_rows[block])
        _top_k_kernel(scores[:m], np.zeros(m), width, *mask, pool_idx[:m], pool_val[:m])
        exact_top_k(
            users[:m],
            items64,
            (pool_idx[:m], pool_val[:m]),
            offsets[block],
            mask,
            (idx[block], val[block]),
            largest_item,
        )
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
