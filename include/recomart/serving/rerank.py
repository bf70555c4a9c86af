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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

import numpy as np
from scipy import sparse

SESSION_HALF_LIFE_S = 1800.0
"""Half-life of a session item's weight (30 minutes, the session features' count window)."""
SELF_SIMILARITY = 1.0
"""A session item counts as its own neighbour: shoppers often buy what they just viewed or carted."""
HEAD = 64
"""How many re-ranked candidates are sorted first (a response reads ``k`` of them, plus the filtered)."""
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


class Boosts(Mapping[str, float]):
    """Session boosts ``{item: boost in (0, 1]}`` held as arrays, in first-appearance order.

    A session of 40 items boosts up to 2,000 neighbours, and a dict of them costs more than the
    rest of a request's re-ranking; :func:`rerank` reads the arrays, and the mapping (for tests,
    the replay benchmark and debugging) is built only when it is read.

    ``names``: object array of item ids; ``values``: their boosts; ``keys``: each item's key, its
    row in ``index`` (the model's item rows) or, for an item the model does not know, in ``extra``.
    """

    def __init__(
        self,
        names: np.ndarray,
        values: np.ndarray,
        keys: np.ndarray,
        index: Mapping[str, int],
        extra: Mapping[str, int] | None = None,
    ) -> None:
        self.names, self.values, self.keys = names, values, keys
        self._index, self._extra = index, extra or {}
        self._dict: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, boosts: Mapping[str, float]) -> Boosts:
        """Boosts from a plain mapping (in its order)."""
        if isinstance(boosts, Boosts):
            return boosts
        values = np.fromiter(boosts.values(), dtype=np.float64, count=len(boosts))
        index = {item: key for key, item in enumerate(boosts)}
        return cls(np.asarray(list(boosts), dtype=object), values, np.arange(len(boosts)), index)

    def positions(self, items: Sequence[str]) -> np.ndarray:
        """Each of ``items``' position in :attr:`names`, or -1 when it is not boosted."""
        index, extra = self._index, self._extra
        keys = np.asarray([index.get(item, -1) for item in items], dtype=np.int64)
        if extra:
            for at in np.flatnonzero(keys < 0).tolist():
                keys[at] = extra.get(items[at], -1)
        slots = np.full(max(int(keys.max(initial=-1)), int(self.keys.max(initial=-1))) + 2, -1, dtype=np.int64)
        slots[self.keys] = np.arange(len(self.keys))
        return slots[keys]  # a key of -1 reads the last slot, which no boosted item holds

    def _mapping(self) -> dict[str, float]:
        if self._dict is None:
            self._dict = dict(zip(self.names.tolist(), self.values.tolist(), strict=True))
        return self._dict

    def __getitem__(self, item: str) -> float:
        return self._mapping()[item]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self.names)


NO_BOOSTS = Boosts(np.zeros(0, dtype=object), np.zeros(0), np.zeros(0, dtype=np.int64), {})


def _visits(
    entries: list[tuple[str, datetime]], neighbours: Neighbours, now: datetime, half_life_s: float
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(keys, weights, unknown)``: every (item, weight) a loop over the session would add, in its
    order (each session item, then its neighbours); ``unknown`` gives the keys of session items the
    model does not know (after the model's rows)."""
    matrix, index, known = neighbours.similarity, neighbours.index, len(neighbours.item_ids)
    unknown: dict[str, int] = {}
    rows = np.asarray([index.get(item, -1) for item, _ in entries], dtype=np.int64)
    self_keys = np.asarray(
        [
            row if row >= 0 else unknown.setdefault(item, known + len(unknown))
            for (item, _), row in zip(entries, rows.tolist(), strict=True)
        ],
        dtype=np.int64,
    )
    # Python's pow, item by item: numpy's vectorised power may differ in the last bit
    decay = np.asarray([0.5 ** (max((now - at).total_seconds(), 0.0) / half_life_s) for _, at in entries])
    starts = np.where(rows >= 0, matrix.indptr[rows.clip(0)], 0)
    counts = np.where(rows >= 0, matrix.indptr[rows.clip(0) + 1], 0) - starts
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])  # neighbours of the entries before each
    is_self = np.zeros(len(entries) + int(counts.sum()), dtype=bool)
    is_self[np.arange(len(entries)) + before] = True
    positions = np.repeat(starts - before, counts) + np.arange(counts.sum())  # into the matrix's data
    keys = np.empty(len(is_self), dtype=np.int64)
    keys[is_self], keys[~is_self] = self_keys, matrix.indices[positions]
    weights = np.empty(len(is_self))
    weights[is_self] = decay * SELF_SIMILARITY
    weights[~is_self] = np.repeat(decay, counts) * matrix.data[positions].astype(np.float64)
    return keys, weights, unknown


def session_boosts(
    session: Session, neighbours: Neighbours, now: datetime, half_life_s: float = SESSION_HALF_LIFE_S
) -> Boosts:
    """``{item: boost in (0, 1]}`` for the neighbours of the session's viewed and carted items, in the
    order of first appearance (the session's order, each item before its neighbours).

    Vectorised over the whole session (up to 40 items of 50 neighbours each), without a sort: the
    visits are summed per key over the key space (``bincount`` adds them in the loop's order, so
    each sum is the loop's value), and a key's first visit is where the loop first meets it."""
    entries = [*session.viewed, *session.carted]
    if not entries:
        return NO_BOOSTS
    keys, weights, unknown = _visits(entries, neighbours, now, half_life_s)
    space = len(neighbours.item_ids) + len(unknown)
    sums = np.bincount(keys, weights=weights, minlength=space)
    first = np.full(space, len(keys), dtype=np.int64)
    np.minimum.at(first, keys, np.arange(len(keys)))
    ordered = keys[first[keys] == np.arange(len(keys))]  # each key once, in first-visit order
    top = float(sums[ordered].max())
    if top <= 0:
        return NO_BOOSTS
    names = neighbours.item_ids
    if unknown:
        names = np.concatenate([names, np.asarray(list(unknown), dtype=object)])
    return Boosts(names[ordered], sums[ordered] / top, ordered, neighbours.index, unknown)


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

    def __init__(self, items: np.ndarray, scores: np.ndarray, nightly: np.ndarray, boosts: np.ndarray) -> None:
        self._items, self._scores, self._nightly, self._boosts = items, scores, nightly, boosts
        self._order: list[int] = []

    def _ordered(self, upto: int) -> list[int]:
        """The candidates' order (ties keep the candidates' order), sorted at least up to ``upto``.

        The first reads sort only the candidates scoring at least the :data:`HEAD`-th best score
        (ties included, so they are exactly the head of the full order); reading past them sorts all."""
        if upto < len(self._order):
            return self._order
        scores = self._scores
        if not self._order and len(scores) > HEAD and upto < HEAD:
            threshold = np.partition(scores, len(scores) - HEAD)[len(scores) - HEAD]
            head = np.flatnonzero(scores >= threshold)
            self._order = head[np.lexsort((head, -scores[head]))].tolist()
        else:
            self._order = np.argsort(-scores, kind="stable").tolist()
        return self._order

    def __len__(self) -> int:
        return len(self._scores)

    @overload
    def __getitem__(self, index: int) -> Ranked: ...
    @overload
    def __getitem__(self, index: slice) -> list[Ranked]: ...
    def __getitem__(self, index: int | slice) -> Ranked | list[Ranked]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        at = self._ordered(index)[index]
        return Ranked(self._items[at], float(self._scores[at]), float(self._nightly[at]), float(self._boosts[at]))


def rerank(
    items: Sequence[str],
    scores: Sequence[float],
    boosts: Mapping[str, float],
    weight: float,
    exclude: Iterable[str] = (),
) -> RankedOrder:
    """The nightly ``items`` (with ``scores``) and the boosted neighbours, best first, without ``exclude``.

    With no boosts (or ``weight`` 0) the nightly order is kept (minus ``exclude``); equal scores keep
    the nightly order, then the boosts' order.
    """
    excluded = set(exclude)
    nightly = np.asarray(scores, dtype=np.float64)
    known = ~np.isnan(nightly)
    top = (float(nightly[known].max()) if known.any() else 0.0) or 1.0
    nightly = np.where(known, nightly / top, 0.0)
    if len(set(items)) < len(items):  # a repeated item keeps its first place and its last score
        by_item = dict(zip(items, nightly.tolist(), strict=True))
        items, nightly = list(by_item), np.asarray(list(by_item.values()), dtype=np.float64)
    kept = np.asarray([item not in excluded for item in items], dtype=bool)
    listed, nightly = np.asarray(items, dtype=object)[kept], nightly[kept]
    boosted = Boosts.from_dict(boosts)
    # the boosted neighbours that are neither listed nor excluded join the candidates, in the boosts' order
    at = boosted.positions([*listed.tolist(), *excluded])
    listed_at = at[: len(listed)]
    added = np.ones(len(boosted), dtype=bool)
    added[at[at >= 0]] = False
    candidates = np.concatenate([listed, boosted.names[added]])
    nightly_scores = np.concatenate([nightly, np.zeros(int(added.sum()))])
    listed_boosts = np.where(listed_at >= 0, np.append(boosted.values, 0.0)[listed_at], 0.0)
    boost_scores = np.concatenate([listed_boosts, boosted.values[added]])
    final = (1 - weight) * nightly_scores + weight * boost_scores
    return RankedOrder(candidates, final, nightly_scores, boost_scores)
