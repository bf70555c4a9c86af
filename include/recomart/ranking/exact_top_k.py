"""The exact top k of the factor scores, whichever block or shard ranks a user.

:func:`recomart.ranking.scoring.recommend_top_k` selects with a float32 GEMM, whose last bits depend
on the call's shape and, with some OpenBLAS kernels, on the user's row in it (see
:mod:`recomart.ranking.gemm`).  It selects a pool wider than k; :func:`exact_top_k` then scores the
pool's items one dot product at a time in double precision, in one sequential order (the same for a
user in any block), and keeps the k best (ties: the lower item first).  The pool holds the exact
top k whenever its k-th exact score beats the pool's lowest float32 score by more than the float32
product's error bound ``γ_F · |user| · max |item|`` (Higham, *Accuracy and Stability of Numerical
Algorithms*, §3.1, for any order of summation); otherwise, rarely, every item of that user is scored
exactly.
"""

from __future__ import annotations

import numba
import numpy as np

_UNIT_ROUNDOFF_F32 = 2.0**-24


@numba.njit(inline="always")
def _dot(a: np.ndarray, b: np.ndarray) -> float:  # pragma: no cover - jit
    s = 0.0
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@numba.njit(inline="always")
def keep_best(vals: np.ndarray, idxs: np.ndarray, count: int, s: float, j: int) -> int:  # pragma: no cover - jit
    """Insert ``(s, j)`` into the best-first buffers ``vals``/``idxs`` (descending ``s``, ties: ascending
    ``j``) holding ``count`` entries, unless it ranks below a full buffer's last; the new count."""
    k = vals.shape[0]
    if count == k and not (s > vals[k - 1] or (s == vals[k - 1] and j < idxs[k - 1])):
        return count
    pos = count if count < k else k - 1
    if count < k:
        count += 1
    while pos > 0 and (vals[pos - 1] < s or (vals[pos - 1] == s and idxs[pos - 1] > j)):
        vals[pos] = vals[pos - 1]
        idxs[pos] = idxs[pos - 1]
        pos -= 1
    vals[pos] = s
    idxs[pos] = j
    return count


@numba.njit(cache=True, nogil=True)
def _scan_all(  # pragma: no cover - jit
    users_row: np.ndarray,
    items: np.ndarray,
    ex_indices: np.ndarray,
    p: int,
    end: int,
    vals: np.ndarray,
    idxs: np.ndarray,
) -> int:
    """Every unmasked item scored exactly into ``vals``/``idxs``; the count kept."""
    count = 0
    for j in range(items.shape[0]):
        while p < end and ex_indices[p] < j:
            p += 1
        if p < end and ex_indices[p] == j:
            continue
        count = keep_best(vals, idxs, count, _dot(users_row, items[j]), j)
    return count


@numba.njit(parallel=True, cache=True, nogil=True)
def _exact_top_k_kernel(  # pragma: no cover - jit
    users: np.ndarray,
    items: np.ndarray,
    pool_idx: np.ndarray,
    pool_val: np.ndarray,
    bound: np.ndarray,
    offsets: np.ndarray,
    ex_indptr: np.ndarray,
    ex_indices: np.ndarray,
    ex_rows: np.ndarray,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    n_rows, width = pool_idx.shape
    k = out_idx.shape[1]
    for b in numba.prange(n_rows):
        vals = np.full(k, -np.inf)
        idxs = np.full(k, -1, dtype=np.int64)
        count, size = 0, 0
        for p in range(width):
            j = pool_idx[b, p]
            if j < 0:
                break
            size += 1
            count = keep_best(vals, idxs, count, _dot(users[b], items[j]), j)
        whole_pool = size < width  # fewer selectable items than the pool: all of them were scored
        if not whole_pool and not (count == k and vals[k - 1] > np.float64(pool_val[b, width - 1]) + bound[b]):
            vals[:] = -np.inf
            idxs[:] = -1
            r = ex_rows[b]
            start, end = (ex_indptr[r], ex_indptr[r + 1]) if r >= 0 else (0, 0)
            count = _scan_all(users[b], items, ex_indices, start, end, vals, idxs)
        for m in range(count):
            out_idx[b, m] = idxs[m]
            out_val[b, m] = np.float32(vals[m] + offsets[b])


def pool_width(k: int, n_items: int) -> int:
    """How many float32 candidates per user :func:`exact_top_k` re-scores."""
    return min(n_items, 2 * k + 16)


def largest_norm(items: np.ndarray) -> float:
    """The largest L2 norm of a row of ``items`` (0 for none)."""
    return float(np.linalg.norm(items, axis=1).max()) if len(items) else 0.0


def exact_top_k(
    users: np.ndarray,
    items: np.ndarray,
    pool: tuple[np.ndarray, np.ndarray],
    offsets: np.ndarray,
    mask: tuple[np.ndarray, np.ndarray, np.ndarray],
    out: tuple[np.ndarray, np.ndarray],
    largest_item: float | None = None,
) -> None:
    """Write each user's exact top k into ``out``.

    ``users`` float32[b, F] and ``items`` float32/float64[n_items, F]: the two sides of the product;
    ``pool``: ``(int32[b, w], float32[b, w])``, the float32 selection's best ``w`` items and scores per
    user (descending, ``-1`` padded, :func:`pool_width`); ``offsets`` float64[b]: added to the k kept
    scores; ``mask``: the selection's ``(indptr, indices, row of each user)``; ``out``:
    ``(int32[b, k], float32[b, k])``, prefilled with ``-1`` / ``-inf``; ``largest_item``: the largest
    L2 norm of a row of ``items`` (:func:`largest_norm`), computed here when not given.
    """
    users64 = users.astype(np.float64)
    items64 = np.asarray(items, dtype=np.float64)
    f = users.shape[1]
    gamma = f * _UNIT_ROUNDOFF_F32 / (1.0 - f * _UNIT_ROUNDOFF_F32)
    if largest_item is None:
        largest_item = largest_norm(items64)
    bound = 2.0 * gamma * np.sqrt((users64 * users64).sum(axis=1)) * largest_item
    _exact_top_k_kernel(users64, items64, *pool, bound, offsets, *mask, *out)
