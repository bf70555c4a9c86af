"""EASE: the closed-form shallow autoencoder of Steck (WWW 2019), restricted to the best-supported items.

With ``X`` the binary user × item incidence of the training history, ``G = Xᵀ X`` and the L2 weight
``λ``, EASE's item–item weights are::

    P = (G + λ I)⁻¹,   B = I − P · diagMat(1 / diag(P))   (so B_ij = −P_ij / P_jj, B_ii = 0)

and a user's score of item ``j`` is ``Σ_i x_ui B_ij`` over the items ``i`` of the binary history
passed at ranking time (seen items are then filtered by the caller's exclusion policy).

**Item limit.** ``B`` is a dense ``n × n`` float32 matrix and the inverse costs ``O(n³)``, so EASE is
fitted on the ``max_items`` items with the most distinct training users only (:data:`EASE_MAX_ITEMS`
= 10,000 by default: 400 MB for ``B``, about 1.2 GB peak while fitting; items with fewer than
``min_support`` users are never kept).  The cap is a constant setting, so the fit's cost stays bounded
as the catalogue grows.  Items outside the kept set get the score ``-inf``: EASE never recommends them
and they add nothing to a user's score (other components cover the long tail).  The inverse is a
Cholesky factorisation and inversion in place (LAPACK ``potrf`` / ``potri``), about ``n³`` flops, or,
with fewer users than kept items, Woodbury's identity (an ``n_users²`` inverse; see :func:`ease_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import blas, lapack

from recomart.ranking.base import RankedItems, Recommender, TrainingSet, top_neighbours
from recomart.ranking.history import UserHistory
from recomart.ranking.kept import Kept, digest

#: the most items EASE is fitted on (the top items by distinct training users)
EASE_MAX_ITEMS = 10_000
#: the default L2 weight λ (chosen on a validation window by the callers that can)
EASE_DEFAULT_L2 = 500.0
#: the last fit of this process, ``(columns, weights)`` by :attr:`EASE.fit_key` (the train DAG's tuning
#: fits the chosen λ on the train part, and the learned ranker's fit of that part is then a lookup:
#: :meth:`EASE.remember`)
FITTED: Kept[tuple[np.ndarray, np.ndarray]] = Kept(1)


def supported_items(support: np.ndarray, max_items: int, min_support: int = 1) -> np.ndarray:
    """Sorted catalogue columns (int64) of the ``max_items`` best-supported items with support
    ``>= min_support``; ties at the cut go to the lower column.  ``support``: int[n_items]."""
    support = np.asarray(support)
    eligible = np.flatnonzero(support >= max(int(min_support), 1))
    order = np.argsort(-support[eligible], kind="stable")[: max(int(max_items), 0)]
    return np.sort(eligible[order]).astype(np.int64)


def _symmetrise_from_upper(a: np.ndarray, block: int = 1024) -> np.ndarray:
    """Copy the upper triangle of the square ``a`` onto its lower one, in place, ``block`` rows at a time."""
    n = a.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        a[start:stop, :start] = a[:start, start:stop].T
        square = a[start:stop, start:stop]
        a[start:stop, start:stop] = np.triu(square) + np.triu(square, 1).T
    return a


def inverse_spd(a: np.ndarray) -> np.ndarray:
    """The inverse of the symmetric positive definite ``a`` (float32 or float64 [n, n], C-contiguous),
    computed in place (Cholesky ``potrf`` then ``potri``); ``a`` is consumed, the result is C-contiguous."""
    f = np.asfortranarray(a.T)  # symmetric: the transpose of a C-contiguous matrix is a Fortran view
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (f,))
    factor, info = potrf(f, lower=0, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"matrix is not positive definite (potrf info {info})")
    inverse, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"inversion failed (potri info {info})")
    return _symmetrise_from_upper(inverse).T  # symmetric again: the transpose is C-contiguous


def ease_precision(x: sparse.csr_matrix, l2: float) -> np.ndarray:
    """``P = (XᵀX + λI)⁻¹`` (float32[n_items, n_items], C-contiguous) of the binary users × items ``x``.

    With fewer users than items, through Woodbury's identity: with ``λI + XXᵀ = L Lᵀ`` (Cholesky,
    float64, ``n_users²``) and ``Y = L⁻¹ X``, ``P = (I − YᵀY) / λ`` (one symmetric rank-``n_users``
    product, ``n_items² × n_users`` flops, instead of an ``n_items³`` inverse; exact, not an approximation).
    """
    x = sparse.csr_matrix(x, dtype=np.float32)
    n_users, n_items = x.shape
    if n_users >= n_items:
        gram = np.asarray((x.T @ x).toarray(), dtype=np.float32)
        gram[np.diag_indices(n_items)] += np.float32(l2)
        return inverse_spd(gram)
    kernel = np.asarray((x @ x.T).toarray(), dtype=np.float64)
    kernel[np.diag_indices(n_users)] += l2
    lower = linalg.cholesky(kernel, lower=True, overwrite_a=True, check_finite=False)
    y = linalg.solve_triangular(lower, x.toarray().astype(np.float64), lower=True, check_finite=False)
    y_t = np.asfortranarray(y.astype(np.float32).T)  # items × users
    p = blas.ssyrk(np.float32(-1.0 / l2), y_t, trans=0, lower=0)  # upper triangle of −YᵀY / λ
    p = _symmetrise_from_upper(p).T
    p[np.diag_indices(n_items)] += np.float32(1.0 / l2)
    return p


def ease_weights(x: sparse.csr_matrix, l2: float) -> np.ndarray:
    """EASE's ``B = I − P · diagMat(1 / diag(P))`` (float32[n_items, n_items], zero diagonal) of the
    binary users × items ``x`` with the L2 weight ``l2`` (see :func:`ease_precision`)."""
    if l2 <= 0:
        raise ValueError(f"the L2 weight must be positive, got {l2}")
    if x.shape[1] == 0:
        return np.zeros((0, 0), dtype=np.float32)
    p = ease_precision(x, l2)
    p /= -p.diagonal().copy()[None, :]
    np.fill_diagonal(p, 0.0)
    return p


class EASE(Recommender):
    """EASE over the ``max_items`` best-supported items (see the module docstring).

    ``l2``: the L2 weight λ; ``max_items``: the item cap (:data:`EASE_MAX_ITEMS`); ``min_support``: the
    fewest distinct training users of a kept item.  After :meth:`fit`, ``columns`` (int64[m]) are the
    kept items' catalogue positions and ``weights`` (float32[m, m]) their ``B``.
    """

    def __init__(self, *, l2: float = EASE_DEFAULT_L2, max_items: int = EASE_MAX_ITEMS, min_support: int = 1) -> None:
        self.l2 = float(l2)
        self.max_items = int(max_items)
        self.min_support = int(min_support)
        self.item_ids = np.zeros(0, dtype=object)
        self.columns = np.zeros(0, dtype=np.int64)
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.fit_key: str | None = None

    def fit(self, training: TrainingSet) -> EASE:
        """Fit on ``training``'s binary incidence; the same incidence and settings as the process's last
        fit (:data:`FITTED`, keyed by :attr:`fit_key`) reuse it."""
        self.item_ids = training.item_ids
        x = training.entries.binary_matrix()
        self.fit_key = digest(x.indptr, x.indices, repr((x.shape, self.l2, self.max_items, self.min_support)))
        self.columns, self.weights = FITTED.get(self.fit_key, lambda: self._solve(x))
        return self

    def _solve(self, x: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        support = np.diff(x.tocsc().indptr)
        columns = supported_items(support, self.max_items, self.min_support)
        return columns, ease_weights(x[:, columns], self.l2)

    @staticmethod
    def remember(fit_key: str, arrays: dict[str, np.ndarray]) -> None:
        """Keep the fitted ``arrays`` (:meth:`state`'s) of another process as this process's fit of
        ``fit_key``."""
        FITTED.put(fit_key, (np.asarray(arrays["columns"], np.int64), np.asarray(arrays["weights"], np.float32)))

    def _kept_history(self, history: UserHistory, rows: np.ndarray) -> sparse.csr_matrix:
        """Binary CSR [len(rows), m] of the users' history over the kept items."""
        return sparse.csr_matrix(history.binary_matrix()[rows][:, self.columns])

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items]: ``x_u B`` on the kept items, ``-inf`` elsewhere."""
        out = np.full((len(rows), history.n_items), -np.inf, dtype=np.float32)
        if len(self.columns):
            out[:, self.columns] = np.asarray(self._kept_history(history, rows) @ self.weights, dtype=np.float32)
        return out

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        """Items ``j`` with the largest positive ``B_ij`` of each kept item ``i`` (others: empty rows)."""
        position = np.full(len(self.item_ids), -1, dtype=np.int64)
        position[self.columns] = np.arange(len(self.columns))
        rows = self.item_rows(item_ids)
        rows = np.where(rows >= 0, position[np.maximum(rows, 0)], -1)
        kept_cols, values = top_neighbours(lambda r: self.weights[r], rows, k)
        columns = np.where(kept_cols >= 0, self.columns[np.maximum(kept_cols, 0)], -1)
        return RankedItems.from_columns(self.item_ids, columns, values)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        settings = {"l2": self.l2, "max_items": self.max_items, "min_support": self.min_support}
        return {"columns": self.columns, "weights": self.weights}, settings

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> EASE:
        component = cls(
            l2=float(settings["l2"]), max_items=int(settings["max_items"]), min_support=int(settings["min_support"])
        )
        component.item_ids = item_ids
        component.columns = np.asarray(arrays["columns"], dtype=np.int64)
        component.weights = np.asarray(arrays["weights"], dtype=np.float32)
        return component
