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
from typing import Any, NamedTuple, overload

import numba
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
    _slots: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    def slots(self, size: int) -> np.ndarray:
        """A scratch array of at least ``size`` slots, all -1, that the kernels below borrow and leave
        all -1 again (one per model, reused: no catalogue-sized array is filled per request). The
        kernels hold the GIL, so two threads never borrow it at once."""
        if not self._slots or len(self._slots[0]) < size:
            self._slots[:] = [np.full(size + 64, -1, dtype=np.int64)]
        return self._slots[0]

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


SESSION_KINDS = ("viewed", "carted", "bought")
SESSION_FEATURES = tuple(f"{kind}_{field}" for kind in SESSION_KINDS for field in ("item_ids", "at"))
"""The session features re-ranking reads (``recomart.features.session`` field names)."""


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

        viewed, carted, bought = (pairs(kind) for kind in SESSION_KINDS)
        return cls(viewed, carted, bought)

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
    row in ``index`` (the model's item rows) or, for an item the model does not know, in ``extra``;
    ``slots``: the model's scratch slots (:meth:`Neighbours.slots`), longer than any key.
    """

    def __init__(
        self,
        names: np.ndarray,
        values: np.ndarray,
        keys: np.ndarray,
        index: Mapping[str, int],
        extra: Mapping[str, int] | None = None,
        slots: np.ndarray | None = None,
    ) -> None:
        self.names, self.values, self.keys = names, values, keys
        self._index, self._extra = index, extra or {}
        self._slots = slots
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
        slots = self._slots if self._slots is not None else np.full(len(self._index) + 1, -1, dtype=np.int64)
        return _positions(self.keys, keys, slots)

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


@numba.njit(cache=True)
def _summed_visits(  # pragma: no cover - jit
    rows: np.ndarray,
    self_keys: np.ndarray,
    decay: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    slots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, sums)``: each key the session visits once, in first-visit order, with its weights summed
    in visit order (the loop's own sum). The loop visits each session entry (key ``self_keys[e]``,
    weight ``decay[e] * SELF_SIMILARITY``), then its neighbours in the similarity matrix's row
    ``rows[e]`` (none when ``rows[e] < 0``; weight ``decay[e] * similarity``). ``slots``: all -1,
    longer than the largest key; left all -1."""
    total = len(rows)
    for e in range(len(rows)):
        if rows[e] >= 0:
            total += indptr[rows[e] + 1] - indptr[rows[e]]
    keys = np.empty(total, np.int64)
    sums = np.empty(total, np.float64)
    found = 0
    for e in range(len(rows)):
        found = _visit(self_keys[e], decay[e] * SELF_SIMILARITY, keys, sums, found, slots)
        if rows[e] >= 0:
            for j in range(indptr[rows[e]], indptr[rows[e] + 1]):
                found = _visit(indices[j], decay[e] * np.float64(data[j]), keys, sums, found, slots)
    for n in range(found):
        slots[keys[n]] = -1
    return keys[:found], sums[:found]


@numba.njit(inline="always")
def _visit(
    key: int, weight: float, keys: np.ndarray, sums: np.ndarray, found: int, slots: np.ndarray
) -> int:  # pragma: no cover - jit
    """Add ``weight`` to ``key``'s sum (a new key takes the next place); the count of keys."""
    at = slots[key]
    if at < 0:
        slots[key], keys[found], sums[found] = found, key, weight
        return found + 1
    sums[at] += weight
    return found


@numba.njit(cache=True)
def _positions(keys: np.ndarray, queries: np.ndarray, slots: np.ndarray) -> np.ndarray:  # pragma: no cover - jit
    """Each query key's position in ``keys`` (distinct), -1 when absent or negative; ``slots`` as above."""
    for at in range(len(keys)):
        slots[keys[at]] = at
    out = np.full(len(queries), -1, np.int64)
    for n in range(len(queries)):
        if 0 <= queries[n] < len(slots):
            out[n] = slots[queries[n]]
    for at in range(len(keys)):
        slots[keys[at]] = -1
    return out


def session_boosts(
    session: Session, neighbours: Neighbours, now: datetime, half_life_s: float = SESSION_HALF_LIFE_S
) -> Boosts:
    """``{item: boost in (0, 1]}`` for the neighbours of the session's viewed and carted items, in the
    order of first appearance (the session's order, each item before its neighbours).

    One compiled pass over the session (up to 40 items of 50 neighbours each): no array as large as
    the catalogue, and each sum is added in the loop's order, so it is the loop's value."""
    entries = [*session.viewed, *session.carted]
    if not entries:
        return NO_BOOSTS
    index, known = neighbours.index, len(neighbours.item_ids)
    unknown: dict[str, int] = {}
    rows = [index.get(item, -1) for item, _ in entries]
    self_keys = [
        row if row >= 0 else unknown.setdefault(item, known + len(unknown))
        for (item, _), row in zip(entries, rows, strict=True)
    ]
    # Python's pow, item by item: numpy's vectorised power may differ in the last bit
    decay = [0.5 ** (max((now - at).total_seconds(), 0.0) / half_life_s) for _, at in entries]
    matrix = neighbours.similarity
    slots = neighbours.slots(known + len(unknown))
    ordered, sums = _summed_visits(
        np.asarray(rows, dtype=np.int64),
        np.asarray(self_keys, dtype=np.int64),
        np.asarray(decay, dtype=np.float64),
        matrix.indptr,
        matrix.indices,
        matrix.data,
        slots,
    )
    top = float(sums.max())
    if top <= 0:
        return NO_BOOSTS
    names = neighbours.item_ids
    if unknown:
        names = np.concatenate([names, np.asarray(list(unknown), dtype=object)])
    return Boosts(names[ordered], sums / top, ordered, neighbours.index, unknown, slots)


class Ranked(NamedTuple):
    """One re-ranked item: the final score, the nightly score and the session boost behind it."""

    item_id: str
    score: float
    nightly_score: float
    session_boost: float


ROWS_AT_ONCE = 16
"""How many :class:`Ranked` rows a read past the built ones builds (a response reads about ``k``)."""


class RankedOrder(Sequence[Ranked]):
    """The re-ranked candidates, best first (``order``: the candidates' indices, ties in the candidates'
    order); :class:`Ranked` rows are built as they are read, a few at a time (a caller usually reads
    the first ``k`` of hundreds of candidates)."""

    def __init__(
        self, items: np.ndarray, scores: np.ndarray, nightly: np.ndarray, boosts: np.ndarray, order: np.ndarray
    ) -> None:
        self._items, self._scores, self._nightly, self._boosts = items, scores, nightly, boosts
        self._order = order
        self._rows: list[Ranked] = []

    def _build_rows(self, upto: int) -> list[Ranked]:
        """The rows built so far, at least up to ``upto``."""
        built = len(self._rows)
        at = self._order[built : min(max(upto + 1, built + ROWS_AT_ONCE), len(self._order))]
        self._rows += map(
            Ranked,
            self._items[at].tolist(),
            self._scores[at].tolist(),
            self._nightly[at].tolist(),
            self._boosts[at].tolist(),
        )
        return self._rows

    def __len__(self) -> int:
        return len(self._scores)

    def __iter__(self) -> Iterator[Ranked]:
        """The rows best first, built a few at a time as they are read (without ``Sequence``'s
        per-item ``__getitem__``)."""
        read = 0
        while read < len(self._scores):
            rows = self._rows if read < len(self._rows) else self._build_rows(read)
            yield from rows[read:]
            read = len(rows)

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
        rows = self._rows if index < len(self._rows) else self._build_rows(index)
        return rows[index]


@numba.njit(cache=True)
def _merged(  # pragma: no cover - jit
    raw: np.ndarray, score_at: np.ndarray, keep: np.ndarray, at: np.ndarray, boosts: np.ndarray, weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(sources, nightly, boost, final, order)`` of the candidates: the listed items ``n`` with ``keep[n]``, in
    order, then the boosted items that no listed or excluded item took (``at``: each listed item's
    position in ``boosts``, then each excluded item's; -1 for none), in the boosts' order.

    ``sources[c]`` is a listed item's index ``n``, or ``len(keep) + q`` for boost ``q``. A listed item's
    nightly score is ``raw[score_at[n]]`` over the largest non-NaN raw score (1 when that is 0 or
    none is; NaN counts as 0); ``final = (1 - weight) * nightly + weight * boost``; ``order``: the
    candidates best first, equal scores in the candidates' order (a stable sort)."""
    top, found = 0.0, False
    for v in raw:
        if not np.isnan(v) and (not found or v > top):
            top, found = v, True
    if top == 0.0:
        top = 1.0
    listed = len(keep)
    added = np.ones(len(boosts), np.bool_)
    for p in at:
        if p >= 0:
            added[p] = False
    count = keep.sum() + added.sum()
    sources = np.empty(count, np.int64)
    nightly, boost, final = np.empty(count), np.empty(count), np.empty(count)
    c = 0
    for n in range(listed):
        if keep[n]:
            v = raw[score_at[n]]
            sources[c], nightly[c] = n, 0.0 if np.isnan(v) else v / top
            boost[c] = boosts[at[n]] if at[n] >= 0 else 0.0
            c += 1
    for q in range(len(boosts)):
        if added[q]:
            sources[c], nightly[c], boost[c] = listed + q, 0.0, boosts[q]
            c += 1
    for c in range(count):
        final[c] = (1 - weight) * nightly[c] + weight * boost[c]
    return sources, nightly, boost, final, np.argsort(-final, kind="mergesort")


def rerank(
    items: Sequence[str],
    scores: Sequence[float],
    boosts: Mapping[str, float],
    weight: float,
    exclude: Iterable[str] = (),
) -> RankedOrder:
    """The nightly ``items`` (with ``scores``) and the boosted neighbours, best first, without ``exclude``.

    With no boosts (or ``weight`` 0) the nightly order is kept (minus ``exclude``); equal scores keep
    the nightly order, then the boosts' order. One compiled pass builds the candidates.
    """
    excluded = set(exclude)
    raw = np.asarray(scores, dtype=np.float64)
    score_at = np.arange(len(items))
    if len(set(items)) < len(items):  # a repeated item keeps its first place and its last score
        last = {item: n for n, item in enumerate(items)}
        items, score_at = list(last), np.fromiter(last.values(), dtype=np.int64, count=len(last))
    keep = np.fromiter((item not in excluded for item in items), dtype=np.bool_, count=len(items))
    boosted = Boosts.from_dict(boosts)
    at = boosted.positions([*items, *excluded])
    values = np.asarray(boosted.values, dtype=np.float64)
    sources, nightly, boost, final, order = _merged(raw, score_at, keep, at, values, weight)
    candidates = np.concatenate([np.asarray(items, dtype=object), boosted.names])[sources]
    return RankedOrder(candidates, final, nightly, boost, order)
