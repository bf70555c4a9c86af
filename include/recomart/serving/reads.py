"""Per-request reads of the live generation: Redis (one GET, asyncio) first, Postgres when Redis fails.

A key missing from a complete generation in Redis means the user (or item) is not in it, so it
needs no Postgres read. When Redis fails (or the process serves Postgres), one indexed query reads
the list; its ``generation_id`` comes with the rows, so a response never mixes two generations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from recomart.recommend.cache import COMPONENT_COLUMNS, CacheLayout, unpack
from recomart.recommend.tables import ALSO_BOUGHT
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


class ListReader:
    """Reads lists of the generation a request started with: Redis without blocking the event loop,
    Postgres (a blocking driver) in the threadpool."""

    def __init__(self, client: redis.asyncio.Redis | None, layout: CacheLayout | None, pool: ConnectionPool) -> None:
        self.redis = client
        self.layout = layout
        self.pool = pool

    async def _cached(self, generation: Generation, key: str) -> bytes | None | bool:
        """The cached value (``None``: not in the generation), or ``False`` when Postgres must answer."""
        if generation.source != "redis" or self.redis is None:
            return False
        try:
            return await self.redis.get(key)
        except redis.RedisError:
            return False

    async def user(self, generation: Generation, user_id: str, route: str) -> UserList | None:
        """The user's list, or None when the user is not in the generation."""
        layout = self.layout
        raw = await self._cached(generation, layout.user(generation.generation_id, user_id) if layout else "")
        if raw is not False:
            LIST_READS.labels(route, "redis" if raw is not None else "cold_start").inc()
            return None if raw is None else _user_list(generation.generation_id, unpack(raw), "redis")
        found = await run_in_threadpool(self.pg_user, user_id)
        LIST_READS.labels(route, "postgres" if found is not None else "cold_start").inc()
        return found

    async def similar(
        self, generation: Generation, item_id: str, route: str, kind: str = ALSO_BOUGHT
    ) -> SimilarList | None:
        """The item's neighbours of ``kind`` (``reco.similar_items.kind``), or None when the generation has none."""
        layout = self.layout
        raw = await self._cached(generation, layout.similar(generation.generation_id, item_id, kind) if layout else "")
        if raw is not False:
            LIST_READS.labels(route, "redis" if raw is not None else "cold_start").inc()
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
