"""Reciprocal rank fusion (Cormack et al., SIGIR 2009): ``score(d) = sum_r w_r / (k + rank_r(d))``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FusionParams:
    """``k``: the rank offset (larger flattens the head); ``weights``: per retriever (default 1);
    ``depth``: how many candidates each retriever contributes."""

    k: float = 60.0
    weights: Mapping[str, float] = field(default_factory=dict)
    depth: int = 100

    def weight(self, retriever: str) -> float:
        return float(self.weights.get(retriever, 1.0))


@dataclass(frozen=True)
class Fused:
    """Fused ranking: ``rows`` best first, their ``scores``, and per retriever the 1-based rank of each
    row (0 where that retriever did not return it)."""

    rows: np.ndarray
    scores: np.ndarray
    ranks: dict[str, np.ndarray]


def reciprocal_rank_fusion(results: Mapping[str, np.ndarray], params: FusionParams, n: int) -> Fused:
    """Fuse ranked row lists (``results[name]``: row indices, best first) into the top ``n``.

    Ties go to the row with the better best rank, then the lower row index, so the order is stable.
    """
    rows = np.unique(np.concatenate([r[: params.depth] for r in results.values()] or [np.zeros(0, np.int64)]))
    scores = np.zeros(len(rows), dtype=np.float64)
    best = np.full(len(rows), np.iinfo(np.int64).max)
    ranks: dict[str, np.ndarray] = {}
    for name, ranked in results.items():
        ranked = ranked[: params.depth]
        rank = np.zeros(len(rows), dtype=np.int64)
        rank[np.searchsorted(rows, ranked)] = np.arange(1, len(ranked) + 1)
        found = rank > 0
        scores[found] += params.weight(name) / (params.k + rank[found])
        best = np.where(found, np.minimum(best, rank), best)
        ranks[name] = rank
    order = np.lexsort((rows, best, -scores))[:n]
    return Fused(rows=rows[order], scores=scores[order], ranks={k: v[order] for k, v in ranks.items()})
