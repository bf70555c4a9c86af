"""Item-to-item collaborative scores ("customers who bought this also bought") from sparse co-occurrence.

The user × item incidence ``X`` (1 = interacted) gives the co-occurrence ``C = Xᵀ X`` and the item
supports ``n_i = C_ii``.  Similarity is Jaccard ``c_ij / (n_i + n_j - c_ij)`` or cosine
``c_ij / sqrt(n_i n_j)``, computed for one block of items at a time as a sparse product and cut to the
``top_n`` neighbours of each item, so neither a dense items × items matrix nor the full sparse ``C``
is ever held (fitted once, on the training history).  A user's score of item ``j`` is
``Σ_i w_ui · S_ij`` over the items ``i`` of the user's recency-weighted history at ranking time,
evaluated per user block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
from scipy import sparse

from recomart.ranking.base import RankedItems, Recommender, TrainingSet, top_neighbours
from recomart.ranking.exact_top_k import keep_best
from recomart.ranking.history import HISTORY_HALF_LIFE_DAYS, UserHistory
from recomart.ranking.kept import Kept, digest

Similarity = Literal["jaccard", "cosine"]


def incidence(user_rows: np.ndarray, item_cols: np.ndarray, n_users: int, n_items: int) -> sparse.csr_matrix:
    """Binary user × item matrix (float32) of the given pairs (duplicates collapse to 1)."""
    x = sparse.csr_matrix((np.ones(len(user_rows), dtype=np.float32), (user_rows, item_cols)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _ranked_entries(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, values, rank)`` of the positive entries, each row's best first (ties: lower column
    first); ``rank`` counts from 0 within the row.  Vectorised."""
    m = sparse.csr_matrix(matrix)
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    cols, vals = m.indices, m.data
    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1] if len(rows) else np.zeros(0, dtype=np.int64)
    first = np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    return rows, cols, vals, np.arange(len(rows)) - first


@numba.njit(cache=True, nogil=True)
def _top_n_kernel(  # pragma: no cover - jit
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int, cols: np.ndarray, vals: np.ndarray
) -> np.ndarray:
    """Each row's ``n`` largest positive entries, best first (ties: lower column), into ``cols`` /
    ``vals`` (``[n_rows, n]``); returns each row's count kept."""
    counts = np.zeros(len(indptr) - 1, dtype=np.int64)
    for r in range(len(indptr) - 1):
        count = 0
        for p in range(indptr[r], indptr[r + 1]):
            if data[p] > 0:
                count = keep_best(vals[r], cols[r], count, data[p], indices[p])
        counts[r] = count
    return counts


def top_n_per_row(matrix: sparse.csr_matrix, n: int) -> sparse.csr_matrix:
    """Keep the ``n`` largest positive entries of each row (ties: lower column first), as float32; one
    pass over each row's entries (no sort of the whole matrix)."""
    m = sparse.csr_matrix(matrix)
    n = max(int(n), 0)
    if n == 0:
        return sparse.csr_matrix(m.shape, dtype=np.float32)
    cols = np.zeros((m.shape[0], n), dtype=np.int64)
    vals = np.zeros((m.shape[0], n), dtype=np.float64)
    counts = _top_n_kernel(
        m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float64), n, cols, vals
    )
    kept = np.arange(n)[None, :] < counts[:, None]
    rows = np.repeat(np.arange(m.shape[0]), counts)
    out = sparse.csr_matrix((vals[kept].astype(np.float32), (rows, cols[kept])), shape=m.shape)
    out.sort_indices()
    return out


def item_similarity(
    x: sparse.csr_matrix,
    *,
    top_n: int = 50,
    method: Similarity = "jaccard",
    min_cooccurrence: int = 1,
    block_items: int = 2048,
) -> sparse.csr_matrix:
    """Sparse items × items similarity, top ``top_n`` neighbours per item, no self-similarity.

    ``x`` is the binary user × item incidence (see :func:`incidence`).
    """
    if method not in ("jaccard", "cosine"):
        raise ValueError(f"unknown similarity {method!r}")
    x = sparse.csr_matrix(x, dtype=np.float32)
    n_items = x.shape[1]
    support = np.asarray(x.sum(axis=0)).ravel().astype(np.float64)
    xc = x.tocsc()
    xt = x.T.tocsr()  # items × users
    parts: list[sparse.csr_matrix] = []
    for start in range(0, n_items, block_items):
        stop = min(start + block_items, n_items)
        co = sparse.csr_matrix(xt[start:stop] @ xc, dtype=np.float64)  # block × items, counts
        r = np.repeat(np.arange(stop - start), np.diff(co.indptr))
        c = co.indices
        gi, gj = support[r + start], support[c]
        if method == "jaccard":
            sim = co.data / np.maximum(gi + gj - co.data, 1.0)
        else:
            sim = co.data / np.sqrt(np.maximum(gi * gj, 1.0))
        sim[(c == r + start) | (co.data < min_cooccurrence)] = 0.0
        co.data = sim
        parts.append(top_n_per_row(co, top_n))
    if not parts:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    return sparse.csr_matrix(sparse.vstack(parts, format="csr"), dtype=np.float32)


def item_item_scores(history: sparse.csr_matrix, similarity: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Dense float32 ``[len(rows), n_items]``: ``history[rows] @ similarity`` (one user block)."""
    return np.asarray((history[rows] @ similarity).toarray(), dtype=np.float32)


def similar_items_frame(similarity: sparse.csr_matrix, item_ids: np.ndarray) -> pd.DataFrame:
    """Rows ``item_id, rank, similar_item_id, score`` of a top-N similarity, best neighbour first."""
    rows, cols, vals, rank = _ranked_entries(similarity)
    return pd.DataFrame(
        {
            "item_id": item_ids[rows] if len(rows) else np.array([], dtype=object),
            "rank": (rank + 1).astype(np.int32),
            "similar_item_id": item_ids[cols] if len(cols) else np.array([], dtype=object),
            "score": vals.astype(np.float64),
        }
    )


#: the last similarities of this process by incidence and settings (a training round fits item-to-item
#: on one window for each option set of the blend search and again for the ranker's candidates)
SIMILARITIES: Kept[sparse.csr_matrix] = Kept(4)


class ItemItem(Recommender):
    """ "Customers who bought this also bought": co-occurrence neighbours of the user's history items.

    ``top_n`` neighbours per item (Jaccard or cosine ``method``) are kept by :meth:`fit`; the history
    weights at ranking time have a :data:`HISTORY_HALF_LIFE_DAYS` half-life.
    """

    def __init__(self, *, top_n: int = 50, method: Similarity = "jaccard") -> None:
        self.top_n = int(top_n)
        self.method: Similarity = method
        self.item_ids = np.zeros(0, dtype=object)
        self.similarity = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, training: TrainingSet) -> ItemItem:
        """The neighbours of ``training``'s incidence (read-only; the same incidence and settings again
        reuse the kept matrix, :data:`SIMILARITIES`)."""
        entries = training.entries
        self.item_ids = training.item_ids
        pairs = incidence(entries.rows, entries.cols, entries.n_users, entries.n_items)
        key = digest(pairs.indptr, pairs.indices, repr((pairs.shape, self.top_n, self.method)))
        self.similarity = SIMILARITIES.get(key, lambda: item_similarity(pairs, top_n=self.top_n, method=self.method))
        return self

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        return item_item_scores(history.weight_matrix(HISTORY_HALF_LIFE_DAYS), self.similarity, rows)

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        columns, values = top_neighbours(lambda rows: self.similarity[rows], self.item_rows(item_ids), k)
        return RankedItems.from_columns(self.item_ids, columns, values)

    def neighbours_frame(self) -> pd.DataFrame:
        """Every item's neighbours (``item_id, rank, similar_item_id, score``): ``reco.similar_items``."""
        return similar_items_frame(self.similarity, self.item_ids)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        sim = self.similarity
        arrays = {"data": sim.data, "indices": sim.indices, "indptr": sim.indptr}
        return {**arrays, "shape": np.asarray(sim.shape, dtype=np.int64)}, {"top_n": self.top_n, "method": self.method}

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> ItemItem:
        component = cls(top_n=int(settings["top_n"]), method=settings["method"])
        component.item_ids = item_ids
        shape = tuple(int(n) for n in arrays["shape"])
        component.similarity = sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return component
