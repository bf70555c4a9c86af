"""RP3β: a three-step random walk user → item → user → item, penalised by the target's popularity.

Paudel et al. (ACM TiiS 2017), as evaluated by Dacrema et al. (RecSys 2019).  With ``X`` the binary
user × item incidence of the training history:

- ``P_ui = X / deg(u)`` (each user row sums to 1) and ``P_iu = Xᵀ / deg(i)`` (each item row sums to 1),
  the one-step transition probabilities, each entry raised to the power ``α``;
- ``W_ij = (Σ_u P_iu P_uj) / deg(j)^β``: the probability of walking from item ``i`` to item ``j``
  through a common user, divided by ``j``'s popularity to the power ``β`` (``β = 0``: plain P3α);
- the diagonal is zeroed and each row of ``W`` keeps its ``top_n`` largest entries (not renormalised).

A user's score of item ``j`` is ``Σ_i x_ui W_ij`` over the items of the binary history passed at
ranking time.  ``W`` is computed ``block_items`` rows at a time (a sparse product, densified per block
and cut to ``top_n``), so only ``block_items × n_items`` floats are dense at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from recomart.ranking.base import RankedItems, Recommender, TrainingSet, top_neighbours
from recomart.ranking.history import UserHistory
from recomart.ranking.kept import Kept, digest
from recomart.ranking.scoring import top_k

#: the last fits of this process by :attr:`RP3Beta.fit_key` (the train DAG's tuning fits the chosen α and
#: β on the train part, and the learned ranker's fit of that part is then a lookup: :meth:`RP3Beta.remember`)
FITTED: Kept[sparse.csr_matrix] = Kept(2)


def transition_matrices(x: sparse.csr_matrix, alpha: float = 1.0) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """``(P_ui, P_iu)``: the row-normalised users × items and items × users CSR (float32) of the binary
    ``x`` (users × items), each entry raised to ``alpha``.  Empty rows stay empty."""
    x = sparse.csr_matrix(x, dtype=np.float64)
    x.data[:] = 1.0

    def normalised(m: sparse.csr_matrix) -> sparse.csr_matrix:
        degree = np.diff(m.indptr).astype(np.float64)
        out = sparse.csr_matrix(sparse.diags(1.0 / np.maximum(degree, 1.0)) @ m)
        out.data = np.power(out.data, alpha)
        return sparse.csr_matrix(out, dtype=np.float32)

    return normalised(x), normalised(sparse.csr_matrix(x.T))


def popularity_penalty(support: np.ndarray, beta: float) -> np.ndarray:
    """float32 ``support ** -beta`` (0 for items without support).  ``support``: int[n_items]."""
    support = np.asarray(support, dtype=np.float64)
    out = np.zeros(len(support), dtype=np.float64)
    seen = support > 0
    out[seen] = np.power(support[seen], -beta)
    return out.astype(np.float32)


def rp3beta_similarity(
    x: sparse.csr_matrix, *, alpha: float = 1.0, beta: float = 0.5, top_n: int = 100, block_items: int = 1024
) -> sparse.csr_matrix:
    """Sparse items × items ``W`` (float32; zero diagonal, ``top_n`` largest per row) of the binary
    users × items ``x``; see the module docstring."""
    return rp3beta_similarities(x, alpha=alpha, betas=(beta,), top_n=top_n, block_items=block_items)[0]


def rp3beta_similarities(
    x: sparse.csr_matrix, *, alpha: float, betas: Sequence[float], top_n: int = 100, block_items: int = 1024
) -> list[sparse.csr_matrix]:
    """:func:`rp3beta_similarity` for each of ``betas``: the walk's product depends on ``alpha`` alone, so
    each block of it is computed once and penalised by each ``β`` in turn (the same ``W`` as one call
    per ``β``)."""
    p_ui, p_iu = transition_matrices(x, alpha)
    n_items = x.shape[1]
    support = np.diff(sparse.csc_matrix(x).indptr)
    penalties = [popularity_penalty(support, beta) for beta in betas]
    kept: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in betas]
    kk = min(top_n, n_items)
    for start in range(0, n_items if kk > 0 else 0, block_items):
        stop = min(start + block_items, n_items)
        walk = np.asarray((p_iu[start:stop] @ p_ui).toarray(), dtype=np.float32)
        for penalty, entries in zip(penalties, kept, strict=True):
            entries.append(_top_neighbours(walk * penalty[None, :], start, kk))
    return [_assembled(entries, n_items) for entries in kept]


def _top_neighbours(dense: np.ndarray, start: int, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, values)`` of the ``kk`` largest positive entries of each row of the block of rows
    ``start …`` (its diagonal zeroed first)."""
    dense[np.arange(len(dense)), np.arange(start, start + len(dense))] = 0.0
    dense[dense <= 0] = -np.inf
    picked, values = top_k(dense, kk)
    keep = np.isfinite(values)
    return np.nonzero(keep)[0] + start, picked[keep], values[keep]


def _assembled(entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_items: int) -> sparse.csr_matrix:
    if not entries:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    rows, cols, values = (np.concatenate(part) for part in zip(*entries, strict=True))
    w = sparse.csr_matrix((values, (rows, cols)), shape=(n_items, n_items))
    w.sort_indices()
    return w


def _fit_key(x: sparse.csr_matrix, alpha: float, beta: float, top_n: int) -> str:
    """:attr:`RP3Beta.fit_key`: a digest of the incidence ``x`` and the settings."""
    return digest(x.indptr, x.indices, repr((x.shape, float(alpha), float(beta), int(top_n))))


class RP3Beta(Recommender):
    """RP3β item–item random walk (see the module docstring): ``alpha`` (exponent of the transition
    probabilities), ``beta`` (popularity penalty) and ``top_n`` neighbours per item."""

    def __init__(self, *, alpha: float = 1.0, beta: float = 0.5, top_n: int = 100) -> None:
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.top_n = int(top_n)
        self.item_ids = np.zeros(0, dtype=object)
        self.similarity = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.fit_key: str | None = None

    def fit(self, training: TrainingSet) -> RP3Beta:
        """Fit on ``training``'s binary incidence; the same incidence and settings as one of the process's
        last fits (:data:`FITTED`, keyed by :attr:`fit_key`) reuse it."""
        self.item_ids = training.item_ids
        x = training.entries.binary_matrix()
        self.fit_key = _fit_key(x, self.alpha, self.beta, self.top_n)
        self.similarity = FITTED.get(
            self.fit_key, lambda: rp3beta_similarity(x, alpha=self.alpha, beta=self.beta, top_n=self.top_n)
        )
        return self

    @staticmethod
    def remember(fit_key: str, arrays: dict[str, np.ndarray]) -> None:
        """Keep the fitted ``arrays`` (:meth:`state`'s) of another process as this process's fit of
        ``fit_key``."""
        shape = tuple(int(n) for n in arrays["shape"])
        FITTED.put(fit_key, sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape))

    @classmethod
    def fitted_for_betas(
        cls, training: TrainingSet, *, alpha: float, betas: Sequence[float], top_n: int = 100
    ) -> list[RP3Beta]:
        """One component per ``β`` of ``betas``, each as :meth:`fit` would fit it, sharing the walk
        (:func:`rp3beta_similarities`)."""
        x = training.entries.binary_matrix()
        fitted = []
        for beta, similarity in zip(betas, rp3beta_similarities(x, alpha=alpha, betas=betas, top_n=top_n), strict=True):
            component = cls(alpha=alpha, beta=beta, top_n=top_n)
            component.item_ids, component.similarity = training.item_ids, similarity
            component.fit_key = _fit_key(x, alpha, beta, top_n)
            fitted.append(component)
        return fitted

    def score(self, history: UserHistory, rows: np.ndarray) -> np.ndarray:
        """float32[len(rows), n_items]: ``x_u W`` of the users' binary history."""
        return np.asarray((history.binary_matrix()[rows] @ self.similarity).toarray(), dtype=np.float32)

    def similar_items(self, item_ids: Sequence[str] | np.ndarray, k: int = 10) -> RankedItems:
        columns, values = top_neighbours(lambda rows: self.similarity[rows], self.item_rows(item_ids), k)
        return RankedItems.from_columns(self.item_ids, columns, values)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        sim = self.similarity
        arrays = {"data": sim.data, "indices": sim.indices, "indptr": sim.indptr}
        settings = {"alpha": self.alpha, "beta": self.beta, "top_n": self.top_n}
        return {**arrays, "shape": np.asarray(sim.shape, dtype=np.int64)}, settings

    @classmethod
    def from_state(cls, item_ids: np.ndarray, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> RP3Beta:
        component = cls(alpha=float(settings["alpha"]), beta=float(settings["beta"]), top_n=int(settings["top_n"]))
        component.item_ids = item_ids
        shape = tuple(int(n) for n in arrays["shape"])
        component.similarity = sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return component
