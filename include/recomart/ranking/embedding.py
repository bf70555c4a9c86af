"""Dense item vectors (sentence embeddings of the product text): "looks like this" neighbours.

The vectors come from ``reco.item_embeddings`` (read by :func:`recomart.marts.read_item_embeddings`);
this module only sees arrays.  :func:`vector_neighbours` gives the ``looks_like`` kind of
``reco.similar_items``; :class:`ItemVectors` and :func:`dense_profiles` are the embedding half of the
hybrid's content component (:class:`recomart.ranking.content.Content`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse


def vector_neighbours(
    item_ids: np.ndarray, vectors: np.ndarray, k: int = 10, *, block_rows: int = 1024
) -> pd.DataFrame:
    """The ``k`` most similar other items of every item, by cosine of unit ``vectors`` (n x dim).

    Returns ``item_id, rank (1 = most similar), similar_item_id, score`` sorted by item and rank;
    identical texts score 1.0.  Rows are scored in blocks (``block_rows x n`` floats at a time), so
    no n x n matrix is ever held.
    """
    ids = np.asarray(item_ids, dtype=object)
    n = len(ids)
    k = min(k, n - 1)
    if k <= 0:
        none = np.zeros(0, dtype=object)
        return pd.DataFrame(
            {"item_id": none, "rank": np.zeros(0, np.int16), "similar_item_id": none, "score": np.zeros(0, np.float32)}
        )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    sources, targets, scores = [], [], []
    for start in range(0, n, block_rows):
        block = vectors[start : start + block_rows] @ vectors.T  # b x n
        rows = np.arange(start, start + len(block))
        block[rows - start, rows] = -np.inf  # never an item's own neighbour
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(block, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        sources.append(np.repeat(rows, k))
        targets.append(np.take_along_axis(top, order, axis=1).ravel())
        scores.append(np.take_along_axis(top_scores, order, axis=1).ravel())
    src, dst = np.concatenate(sources), np.concatenate(targets)
    return pd.DataFrame(
        {
            "item_id": ids[src],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int16), n),
            "similar_item_id": ids[dst],
            "score": np.concatenate(scores).astype(np.float32),
        }
    )


@dataclass(frozen=True)
class ItemVectors:
    """Unit item vectors (``vectors`` float32 n x dim) of ``item_ids`` (object, n), e.g. the sentence
    embeddings of the products' text."""

    item_ids: np.ndarray
    vectors: np.ndarray

    def aligned(self, item_ids: np.ndarray) -> np.ndarray:
        """float32 ``[len(item_ids), dim]``: each item's vector, zeros for an item without one."""
        positions = pd.Index(self.item_ids).get_indexer(pd.Index(np.asarray(item_ids, dtype=object)))
        out = np.zeros((len(positions), self.vectors.shape[1]), dtype=np.float32)
        known = positions >= 0
        out[known] = self.vectors[positions[known]]
        return out


def dense_profiles(
    user_rows: np.ndarray, item_cols: np.ndarray, weights: np.ndarray, n_users: int, items: np.ndarray
) -> np.ndarray:
    """float32 ``[n_users, dim]``: the weighted mean of each user's item vectors (no history: zeros).

    ``(user_rows, item_cols, weights)`` are the history's cells; ``items`` the item vectors (n_items x dim).
    """
    w = sparse.csr_matrix(
        (weights.astype(np.float32), (user_rows, item_cols)), shape=(n_users, items.shape[0]), dtype=np.float32
    )
    totals = np.asarray(w.sum(axis=1)).ravel()
    inv = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0).astype(np.float32)
    return np.asarray(sparse.diags(inv) @ w @ items, dtype=np.float32)
