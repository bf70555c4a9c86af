"""Re-rank a nightly list with the user's session: boost neighbours of what they just viewed or carted.

Pure functions (no I/O): the API calls them with the session features it read through Feast, and
the replay benchmark (``benchmarks/serving_rerank.py``) with sessions built from a held-out day, so
both measure the same code.

For a candidate item ``j`` the session boost is ``b_j = Σ_i d_i · S_ij`` over the session's viewed and
carted items ``i`` (``S``: the champion's item-to-item neighbours, ``d_i = 0.5 ** (age_i / half_life)``),
scaled so the largest boost is 1. The new score is ``(1 - w) · s_j / max(s) + w · b_j``, where ``s_j`` is
the nightly score (0 for a neighbour that was not on the nightly list). Items bought in the session are
dropped for feeds without repeat purchases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

import numpy as np
from scipy import sparse

SESSION_HALF_LIFE_S = 1800.0
"""Half-life of a session item's weight (30 minutes, the session features' count window)."""
SELF_SIMILARITY = 1.0
"""A session item counts as its own neighbour: shoppers often buy what they just viewed or carted."""
DEFAULT_WEIGHT = 0.9
"""The re-ranking weight ``w`` (chosen by the held-out-day replay; see README, Serving API)."""


@dataclass(frozen=True)
class Neighbours:
    """The item-to-item neighbours of the registered artifact (``HybridRecommender.item_item``)."""

    item_ids: np.ndarray
    similarity: sparse.csr_matrix
    index: dict[str, int] = field(repr=False)

    @classmethod
    def from_recommender(cls, recommender: Any) -> Neighbours:
        """From a fitted :class:`~recomart.ranking.hybrid.HybridRecommender` (its ``item_item`` component)."""
        component = recommender.item_item
        item_ids = np.asarray(component.item_ids, dtype=object)
        similarity = sparse.csr_matrix(component.similarity)
        return cls(item_ids, similarity, {str(item): row for row, item in enumerate(item_ids.tolist())})

    def of(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(neighbour ids, similarities)`` of ``item_id`` (empty for an item the model does not know)."""
        row = self.index.get(item_id)
        if row is None:
            return np.zeros(0, dtype=object), np.zeros(0, dtype=np.float32)
        start, stop = self.similarity.indptr[row], self.similarity.indptr[row + 1]
        return self.item_ids[self.similarity.indices[start:stop]], self.similarity.data[start:stop]


@dataclass(frozen=True)
class Session:
    """What re-ranking uses of the session features: ``(item_id, time)`` lists, newest first."""

    viewed: Sequence[tuple[str, datetime]] = ()
    carted: Sequence[tuple[str, datetime]] = ()
    bought: Sequence[tuple[str, datetime]] = ()

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> Session:
        """From the ``user_session_features`` values (``recomart.features.session`` field names)."""

        def pairs(kind: str) -> list[tuple[str, datetime]]:
            items = features.get(f"{kind}_item_ids") or []
            times = features.get(f"{kind}_at") or []
            return list(zip(items, times, strict=False))

        return cls(pairs("viewed"), pairs("carted"), pairs("bought"))

    @property
    def events(self) -> int:
        """How many session entries there are (the response's ``fresh_events_used`` when they are used)."""
        return len(self.viewed) + len(self.carted) + len(self.bought)


def session_boosts(
    session: Session, neighbours: Neighbours, now: datetime, half_life_s: float = SESSION_HALF_LIFE_S
) -> dict[str, float]:
    """``{item: boost in (0, 1]}`` for the neighbours of the session's viewed and carted items, in the
    order of first appearance (the session's order, each item before its neighbours).

    Vectorised over the neighbours (a session holds up to 40 items of 50 neighbours each); each item's
    sum is added in the session's order, as a loop over the session would add it."""
    entries = [*session.viewed, *session.carted]
    matrix, rows, known = neighbours.similarity, neighbours.index, len(neighbours.item_ids)
    unknown: dict[str, int] = {}  # session items the model does not know: keys after the model's rows
    keys, weights = [], []
    for item, at in entries:
        decay = 0.5 ** (max((now - at).total_seconds(), 0.0) / half_life_s)
        row = rows.get(item)
        keys.append(np.asarray([row if row is not None else unknown.setdefault(item, known + len(unknown))]))
        weights.append(np.asarray([decay * SELF_SIMILARITY]))
        if row is not None:
            start, stop = matrix.indptr[row], matrix.indptr[row + 1]
            keys.append(matrix.indices[start:stop])
            weights.append(decay * matrix.data[start:stop].astype(np.float64))
    if not keys:
        return {}
    unique, first, inverse = np.unique(np.concatenate(keys), return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(weights))
    top = float(sums.max())
    if top <= 0:
        return {}
    order = np.argsort(first, kind="stable")
    names = neighbours.item_ids
    if unknown:
        names = np.concatenate([names, np.asarray(list(unknown), dtype=object)])
    return dict(zip(names[unique[order]].tolist(), (sums[order] / top).tolist(), strict=True))


@dataclass(frozen=True)
class Ranked:
    """One re-ranked item: the final score, the nightly score and the session boost behind it."""

    item_id: str
    score: float
    nightly_score: float
    session_boost: float


class RankedOrder(Sequence[Ranked]):
    """The re-ranked candidates, best first; each :class:`Ranked` is built when it is read (a caller
    usually reads the first ``k`` of a thousand candidates)."""

    def __init__(self, items: list[str], scores: np.ndarray, nightly: np.ndarray, boosts: np.ndarray) -> None:
        self._items, self._scores, self._nightly, self._boosts = items, scores, nightly, boosts
        self._order = np.argsort(-scores, kind="stable").tolist()  # ties keep the candidates' order

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> Ranked: ...
    @overload
    def __getitem__(self, index: slice) -> list[Ranked]: ...
    def __getitem__(self, index: int | slice) -> Ranked | list[Ranked]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        at = self._order[index]
        return Ranked(self._items[at], float(self._scores[at]), float(self._nightly[at]), float(self._boosts[at]))


def rerank(
    items: Sequence[str],
    scores: Sequence[float],
    boosts: dict[str, float],
    weight: float,
    exclude: Iterable[str] = (),
) -> RankedOrder:
    """The nightly ``items`` (with ``scores``) and the boosted neighbours, best first, without ``exclude``.

    With no boosts (or ``weight`` 0) the nightly order is kept (minus ``exclude``); equal scores keep
    the nightly order, then the boosts' order.
    """
    excluded = set(exclude)
    top = max((s for s in scores if s == s), default=0.0) or 1.0
    nightly = {item: (s / top if s == s else 0.0) for item, s in zip(items, scores, strict=True)}
    listed = [item for item in nightly if item not in excluded]
    # the boosted neighbours that are not listed: one pass over the boosts' keys, their values as an array
    skip = nightly.keys() | excluded
    added = np.fromiter([item not in skip for item in boosts], dtype=bool, count=len(boosts))
    added_ids = np.asarray(list(boosts), dtype=object)[added].tolist()
    added_boosts = np.fromiter(boosts.values(), dtype=np.float64, count=len(boosts))[added]
    nightly_scores = np.concatenate([[nightly[item] for item in listed], np.zeros(len(added_ids))])
    boost_scores = np.concatenate([[boosts.get(item, 0.0) for item in listed], added_boosts])
    final = (1 - weight) * nightly_scores + weight * boost_scores
    return RankedOrder([*listed, *added_ids], final, nightly_scores, boost_scores)
