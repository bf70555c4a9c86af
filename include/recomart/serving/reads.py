"""Per-request reads of the live generation: Redis (asyncio) first, Postgres when Redis fails.

A key missing from a complete generation in Redis means the user (or item) is not in it, so it
needs no Postgres read.  Concurrent requests' keys go out together in one ``MGET``
(:class:`~recomart.serving.batching.Coalescer`).  A generation's keys never change once it is
complete, so each process keeps the values it read (:class:`ListMemory`, bounded, least recently
used dropped first), and a repeated read needs no Redis round trip.  It keeps Redis's bytes (a list
of 10 is about 0.6 KB so, about 8 KB parsed into Python objects with its reasons) and parses them
per request.  An erasure (``./recomart forget``) deletes keys and bumps the erasure count the
poller reads each second, which empties the memory.  When Redis fails (or the process serves
Postgres), one indexed query reads the list; its ``generation_id`` comes with the
rows, so a response never mixes two generations.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from recomart.recommend.cache import COMPONENT_COLUMNS, CacheLayout, unpack
from recomart.recommend.tables import ALSO_BOUGHT
from recomart.serving.batching import Coalescer
from recomart.serving.live import CONNECT_TIMEOUT_S, Generation
from recomart.serving.metrics import LIST_READS

COMPONENTS = tuple(c.removesuffix("_score") for c in COMPONENT_COLUMNS)


@dataclass(frozen=True)
class UserList:
    """A user's nightly list: items best first, scores, per-component scores (``None`` = no score)."""

    generation_id: int
    items: list[str]
    scores: list[float]
    components: dict[str, list[float | None]]
    strategy: str
    source: str

    @functools.cached_property
    def reasons(self) -> list[dict[str, float]]:
        """Each item's per-component scores, rounded for the response (a missing score left out)."""
        columns = self.components.items()
        return [
            {name: round(value, 6) for name, column in columns if (value := column[n]) is not None}
            for n in range(len(self.items))
        ]

    @functools.cached_property
    def places(self) -> dict[str, int]:
        """Each item's place on the list (the last, for an item listed twice)."""
        return {item: n for n, item in enumerate(self.items)}


@dataclass(frozen=True)
class SimilarList:
    generation_id: int
    items: list[str]
    scores: list[float]
    source: str


def _score(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def postgres_pool(dsn: str) -> ConnectionPool:
    """A small pool for the fallback reads (opened lazily; a dead server fails within seconds)."""
    return ConnectionPool(
        dsn,
        min_size=0,
        max_size=4,
        timeout=CONNECT_TIMEOUT_S,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True},
        open=True,
    )


class ListMemory:
    """The Redis values of generation keys this process read (``None``: the key does not exist), at most
    ``size`` of them, least recently used dropped first; all dropped when ``epoch`` changes (an erasure
    deleted keys).  ``size`` 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.epoch: object = None
        self.values: OrderedDict[str, bytes | None] = OrderedDict()

    def get(self, key: str, epoch: object) -> bytes | None | bool:
        """The kept value of ``key``, or ``False`` when none is kept."""
        if epoch != self.epoch:
            self.values.clear()
            self.epoch = epoch
            return False
        values = self.values
        if key not in values:
            return False
        values.move_to_end(key)
        return values[key]

    def put(self, key: str, value: bytes | None, epoch: object) -> None:
        if self.size <= 0 or epoch != self.epoch:
            return
        self.values[key] = value
        if len(self.values) > self.size:
            self.values.popitem(last=False)


class ListReader:
    """Reads lists of the generation a request started with: kept values first, then Redis without
    blocking the event loop, then Postgres (a blocking driver) in the threadpool.  ``erasures`` gives
    the erasure count the live state last read (a change empties the memory)."""

    def __init__(
        self,
        client: redis.asyncio.Redis | None,
        layout: CacheLayout | None,
        pool: ConnectionPool,
        memory: ListMemory | None = None,
        erasures: Callable[[], object] = lambda: None,
    ) -> None:
        self.redis = client
        self.layout = layout
        self.pool = pool
        self.memory = memory or ListMemory(0)
        self.erasures = erasures
        self._gets: Coalescer[str, bytes | None] = Coalescer(self._mget)

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        assert self.redis is not None
        return await self.redis.mget(keys)

    async def _cached(self, generation: Generation, key: str, route: str) -> bytes | None | bool:
        """The cached value (``None``: not in the generation), or ``False`` when Postgres must answer."""
        if generation.source != "redis" or self.redis is None:
            return False
        epoch = self.erasures()
        value = self._kept(key, route, epoch)
        if value is False:
            try:
                value = await self._gets.get(key)
            except redis.RedisError:
                return False
            self.memory.put(key, value, epoch)
            LIST_READS.labels(route, "redis" if value is not None else "cold_start").inc()
        return value

    def _kept(self, key: str, route: str, epoch: object) -> bytes | None | bool:
        """The value this process keeps for ``key`` (``None``: not in the generation), or ``False``."""
        kept = self.memory.get(key, epoch)
        if kept is not False:
            LIST_READS.labels(route, "memory" if kept is not None else "cold_start").inc()
        return kept

    def kept_user(self, generation: Generation, user_id: str, route: str) -> UserList | None | bool:
        """:meth:`user` when this process keeps the list (no await), else ``False``."""
        if generation.source != "redis" or self.layout is None:
            return False
        generation_id = generation.generation_id
        raw = self._kept(self.layout.user(generation_id, user_id), route, self.erasures())
        return _cached_user_list(generation_id, raw)

    async def user(self, generation: Generation, user_id: str, route: str) -> UserList | None:
        """The user's list, or None when the user is not in the generation."""
        layout, generation_id = self.layout, generation.generation_id
        key = layout.user(generation_id, user_id) if layout else ""
        raw = await self._cached(generation, key, route)
        if raw is not False:
            return _cached_user_list(generation_id, raw)  # type: ignore[return-value]  # not False here
        found = await run_in_threadpool(self.pg_user, user_id)
        LIST_READS.labels(route, "postgres" if found is not None else "cold_start").inc()
        return found

    async def similar(
        self, generation: Generation, item_id: str, route: str, kind: str = ALSO_BOUGHT
    ) -> SimilarList | None:
        """The item's neighbours of ``kind`` (``reco.similar_items.kind``), or None when the generation has none."""
        layout = self.layout
        key = layout.similar(generation.generation_id, item_id, kind) if layout else ""
        raw = await self._cached(generation, key, route)
        if raw is not False:
            if raw is None:
                return None
            items, scores = unpack(raw)
            return SimilarList(generation.generation_id, items, scores, "redis")
        found = await run_in_threadpool(self._pg_similar, item_id, kind)
        LIST_READS.labels(route, "postgres" if found is not None else "cold_start").inc()
        return found

    def pg_user(self, user_id: str) -> UserList | None:
        """The user's list from ``reco.user_recommendations`` (blocking), or None."""
        columns = ", ".join(COMPONENT_COLUMNS)
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"select generation_id, item_id, score, {columns}, strategy "
                "from reco.user_recommendations where user_id = %s order by rank",
                (user_id,),
            ).fetchall()
        if not rows:
            return None
        columns_of = list(zip(*rows, strict=True))
        packed = [list(columns_of[1]), list(columns_of[2])]
        packed += [[math.nan if v is None else v for v in col] for col in columns_of[3 : 3 + len(COMPONENT_COLUMNS)]]
        return _user_list(int(rows[0][0]), [*packed, rows[0][-1]], "postgres")

    def _pg_similar(self, item_id: str, kind: str) -> SimilarList | None:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "select generation_id, similar_item_id, score from reco.similar_items"
                " where item_id = %s and kind = %s order by rank",
                (item_id, kind),
            ).fetchall()
        if not rows:
            return None
        return SimilarList(int(rows[0][0]), [r[1] for r in rows], [float(r[2]) for r in rows], "postgres")


def _user_list(generation_id: int, packed: list[Any], source: str) -> UserList:
    items, scores, *component_columns, strategy = packed
    components = {name: [_score(v) for v in col] for name, col in zip(COMPONENTS, component_columns, strict=True)}
    return UserList(generation_id, list(items), [float(s) for s in scores], components, strategy, source)


def _cached_user_list(generation_id: int, raw: bytes | None | bool) -> UserList | None | bool:
    """The user's list from its Redis value (``None`` and ``False`` passed through)."""
    if raw is None or raw is False:
        return raw
    return _user_list(generation_id, unpack(raw), "redis")
