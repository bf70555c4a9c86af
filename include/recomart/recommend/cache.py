"""The live generation in Redis, so the API answers without a Postgres round trip per request.

After the ``reco`` swap the recommend task copies the live generation from Postgres into
generation-scoped keys (pipelined, msgpack), then flips one pointer key. The API follows the
pointer; Postgres stays the source of truth and the fallback when Redis misses.

Keys (``ns`` = ``<db prefix>:reco``, ``g`` = generation id):

=====================  ===========================================================================
``ns:live``            the generation id the API serves (flipped last)
``ns:previous``        the generation before it (kept for rollback: ``flip_pointer(previous)``)
``ns:erasures``        how many erasures deleted lists (the API empties its kept lists when it changes)
``ns:g:<g>:meta``      generation id, model version, built_at, counts (written last: its presence
                       means the generation's keys are complete)
``ns:g:<g>:u:<user>``  the user's list, columnar: ``[item_ids, scores, svd, item_item, content,
                       buy_again, popularity, strategy]`` (``nan`` = no score)
``ns:g:<g>:s:<item>``  similar items of kind ``also_bought``: ``[item_ids, scores]``
``ns:g:<g>:l:<item>``  similar items of kind ``looks_like`` (same value)
``ns:g:<g>:popular``   cold-start lists per segment (``__all__`` = overall): ``{segment: [ids, scores]}``
``ns:g:<g>:catalogue`` ``{item_id: [title, category, price]}`` of ``marts.dim_products``
=====================  ===========================================================================

Keys of generations other than ``live`` and ``previous`` are deleted after each flip.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgpack
import numpy as np
import pandas as pd
import psycopg
import redis

from recomart.marts import read_catalogue
from recomart.recommend.tables import ALSO_BOUGHT, LOOKS_LIKE

COMPONENT_COLUMNS = ("svd_score", "item_item_score", "content_score", "buy_again_score", "popularity_score")
OVERALL_SEGMENT = "__all__"
PIPELINE_KEYS = 2000
#: the key letter of each kind of ``reco.similar_items`` (``s`` is the one keys had before kinds)
SIMILAR_KEY_LETTERS = {ALSO_BOUGHT: "s", LOOKS_LIKE: "l"}


def pack(value: Any) -> bytes:
    """msgpack with float32 scores (``use_single_float``): compact, and the scores are ``real`` in Postgres."""
    return msgpack.packb(value, use_bin_type=True, use_single_float=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


@dataclass(frozen=True)
class CacheLayout:
    """The Redis key names of one deployment's generations (see the module docstring)."""

    namespace: str

    @property
    def live(self) -> str:
        return f"{self.namespace}:live"

    @property
    def previous(self) -> str:
        return f"{self.namespace}:previous"

    @property
    def erasures(self) -> str:
        return f"{self.namespace}:erasures"

    def generation(self, generation_id: int) -> str:
        return f"{self.namespace}:g:{generation_id}"

    def meta(self, generation_id: int) -> str:
        return f"{self.generation(generation_id)}:meta"

    def user(self, generation_id: int, user_id: str) -> str:
        return f"{self.generation(generation_id)}:u:{user_id}"

    def similar(self, generation_id: int, item_id: str, kind: str = ALSO_BOUGHT) -> str:
        return f"{self.generation(generation_id)}:{SIMILAR_KEY_LETTERS[kind]}:{item_id}"

    def popular(self, generation_id: int) -> str:
        return f"{self.generation(generation_id)}:popular"

    def catalogue(self, generation_id: int) -> str:
        return f"{self.generation(generation_id)}:catalogue"


def cache_layout(db_prefix: str) -> CacheLayout:
    """The layout of the deployment whose databases start with ``db_prefix``."""
    return CacheLayout(f"{db_prefix}:reco")


@dataclass(frozen=True)
class LiveTables:
    """The live generation as read from Postgres (frames sorted by key and rank)."""

    generation_id: int
    model_version: str | None
    built_at: datetime | None
    recommendations: pd.DataFrame
    similar: pd.DataFrame
    popular: pd.DataFrame
    products: pd.DataFrame


def _copy_frame(cur: psycopg.Cursor, query: str) -> pd.DataFrame:
    buffer = io.BytesIO()
    with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype={"user_id": str, "item_id": str, "similar_item_id": str, "segment": str})


def read_live_tables(dsn: str) -> LiveTables | None:
    """The live generation's ``reco`` tables (one REPEATABLE READ snapshot), or None before the first."""
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.cursor() as cur:
            if cur.execute("select to_regclass('reco.generations')").fetchone()[0] is None:
                return None
            live = cur.execute(
                "select generation_id, model_version, built_at from reco.generations where is_live"
            ).fetchone()
            if live is None:
                return None
            recs = _copy_frame(
                cur,
                "select user_id, item_id, score, "
                + ", ".join(COMPONENT_COLUMNS)
                + ", strategy from reco.user_recommendations order by user_id, rank",
            )
            similar = _copy_frame(
                cur, "select kind, item_id, similar_item_id, score from reco.similar_items order by kind, item_id, rank"
            )
            popular = _copy_frame(cur, "select segment, item_id, score from reco.popular_items order by 1, rank")
    products = read_catalogue(dsn).products
    if products is None:
        products = pd.DataFrame(columns=["item_id", "title", "category", "price"])
    return LiveTables(int(live[0]), live[1], live[2], recs, similar, popular, products)


def _groups(keys: np.ndarray) -> Iterator[tuple[Any, int, int]]:
    """``(key, start, stop)`` of each run of equal values in the sorted ``keys``."""
    if len(keys) == 0:
        return
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1]
    stops = np.r_[starts[1:], len(keys)]
    yield from zip(keys[starts].tolist(), starts.tolist(), stops.tolist(), strict=True)


def user_values(recs: pd.DataFrame) -> Iterator[tuple[str, bytes]]:
    """``(user_id, packed list)`` per user of ``recs`` (sorted by user, rank)."""
    items = recs["item_id"].to_numpy(dtype=object)
    scores = [recs[c].to_numpy(dtype=np.float32) for c in ("score", *COMPONENT_COLUMNS)]
    strategy = recs["strategy"].to_numpy(dtype=object)
    for user, start, stop in _groups(recs["user_id"].to_numpy(dtype=object)):
        columns = [items[start:stop].tolist(), *(column[start:stop].tolist() for column in scores)]
        yield user, pack([*columns, strategy[start]])


def similar_values(similar: pd.DataFrame) -> Iterator[tuple[str, bytes]]:
    """``(item_id, packed [neighbour ids, scores])`` per item of ``similar`` (sorted by item, rank)."""
    neighbours = similar["similar_item_id"].to_numpy(dtype=object)
    scores = similar["score"].to_numpy(dtype=np.float32)
    for item, start, stop in _groups(similar["item_id"].to_numpy(dtype=object)):
        yield item, pack([neighbours[start:stop].tolist(), scores[start:stop].tolist()])


def _popular_value(popular: pd.DataFrame) -> bytes:
    lists = {
        segment: [group["item_id"].tolist(), group["score"].astype(np.float32).tolist()]
        for segment, group in popular.groupby("segment", sort=False)
    }
    return pack(lists)


def _catalogue_value(products: pd.DataFrame) -> bytes:
    price = pd.to_numeric(products["price"], errors="coerce").astype(float)
    rows = zip(
        products["item_id"].astype(str).tolist(),
        products["title"].where(products["title"].notna(), None).tolist(),
        products["category"].where(products["category"].notna(), None).tolist(),
        [None if np.isnan(p) else p for p in price.tolist()],
        strict=True,
    )
    return pack({item: [title, category, p] for item, title, category, p in rows})


def _set_many(client: redis.Redis, pairs: Iterator[tuple[str, bytes]]) -> tuple[int, int]:
    """SET every pair, :data:`PIPELINE_KEYS` per round trip; returns (keys, bytes)."""
    keys = size = 0
    pipe = client.pipeline(transaction=False)
    for key, value in pairs:
        pipe.set(key, value)
        keys, size = keys + 1, size + len(value)
        if keys % PIPELINE_KEYS == 0:
            pipe.execute()
    pipe.execute()
    return keys, size


def write_generation(client: redis.Redis, layout: CacheLayout, tables: LiveTables) -> tuple[int, int]:
    """Write ``tables`` under the generation's keys, the ``meta`` key last; returns (keys, bytes)."""
    gid = tables.generation_id
    pairs = [(layout.popular(gid), _popular_value(tables.popular))]
    pairs.append((layout.catalogue(gid), _catalogue_value(tables.products)))
    keys, size = _set_many(client, iter(pairs))
    users = ((layout.user(gid, user), value) for user, value in user_values(tables.recommendations))
    user_keys, user_bytes = _set_many(client, users)
    similar = (
        (layout.similar(gid, item, kind), value)
        for kind, rows in tables.similar.groupby("kind", sort=True)
        for item, value in similar_values(rows)
    )
    similar_keys, similar_bytes = _set_many(client, similar)
    meta = {
        "generation_id": gid,
        "model_version": tables.model_version,
        "built_at": tables.built_at.isoformat() if tables.built_at else None,
        "users": user_keys,
        "similar_items": similar_keys,
    }
    client.set(layout.meta(gid), pack(meta))
    return keys + user_keys + similar_keys + 1, size + user_bytes + similar_bytes


@dataclass(frozen=True)
class FlipResult:
    """The pointer flip: the generation now live, the one kept as previous, and generations deleted."""

    live: int
    previous: int | None
    deleted_generations: tuple[int, ...]
    deleted_keys: int


def _generation_ids(client: redis.Redis, layout: CacheLayout) -> set[int]:
    ids = set()
    for key in client.scan_iter(match=f"{layout.namespace}:g:*:meta", count=1000):
        ids.add(int(key.decode().split(":g:", 1)[1].split(":", 1)[0]))
    return ids


def _delete_generation(client: redis.Redis, layout: CacheLayout, generation_id: int) -> int:
    """UNLINK every key of a generation, the meta key first (so it never looks complete meanwhile)."""
    deleted = client.unlink(layout.meta(generation_id))
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{layout.generation(generation_id)}:*", count=2000):
        batch.append(key)
        if len(batch) >= PIPELINE_KEYS:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def delete_users(client: redis.Redis, layout: CacheLayout, user_ids: Iterable[str]) -> int:
    """Delete the lists of ``user_ids`` from every generation kept in Redis (an erasure); returns keys
    deleted.  The API then finds no list for them, as for a user Postgres does not know (each process
    drops the lists it kept within a poll, when it sees ``ns:erasures`` change)."""
    keys = [layout.user(gid, user) for gid in sorted(_generation_ids(client, layout)) for user in user_ids]
    deleted = int(client.unlink(*keys)) if keys else 0
    client.incr(layout.erasures)  # after the deletion: an API process that sees it reads Redis again
    return deleted


def flip_pointer(client: redis.Redis, layout: CacheLayout, generation_id: int) -> FlipResult:
    """Make ``generation_id`` live (its keys must be complete), keep the one it replaces as
    ``previous``, and delete the keys of every other generation.

    Rollback calls this with the previous generation's id: that one becomes live again and the
    rolled-back one is kept as previous. Raises ``LookupError`` if the generation's keys are not
    in Redis (write them first with :func:`publish_cache`).
    """
    if not client.exists(layout.meta(generation_id)):
        raise LookupError(f"generation {generation_id} is not in Redis ({layout.meta(generation_id)} missing)")
    current = client.get(layout.live)
    previous = int(current) if current is not None and int(current) != generation_id else None
    with client.pipeline(transaction=True) as pipe:
        if previous is not None:
            pipe.set(layout.previous, previous)
        pipe.set(layout.live, generation_id)
        pipe.execute()
    kept = {generation_id}
    stored_previous = client.get(layout.previous)
    if stored_previous is not None:
        kept.add(int(stored_previous))
    stale = sorted(_generation_ids(client, layout) - kept)
    deleted = sum(_delete_generation(client, layout, gid) for gid in stale)
    return FlipResult(generation_id, None if stored_previous is None else int(stored_previous), tuple(stale), deleted)


@dataclass(frozen=True)
class CachePublishResult:
    """What :func:`publish_cache` did."""

    generation_id: int | None
    written_keys: int
    written_bytes: int
    seconds: float
    flip: FlipResult | None

    def as_dict(self) -> dict[str, Any]:
        flip = self.flip
        return {
            "generation_id": self.generation_id,
            "keys": self.written_keys,
            "bytes": self.written_bytes,
            "seconds": round(self.seconds, 2),
            "previous": flip.previous if flip else None,
            "deleted_generations": list(flip.deleted_generations) if flip else [],
        }


def publish_cache(
    dsn: str, client: redis.Redis, layout: CacheLayout, log: Callable[[str], Any] = print
) -> CachePublishResult:
    """Copy Postgres's live generation into Redis (unless its keys are already complete there) and
    flip the pointer to it. Call after every swap of the ``reco`` tables (publish or rollback)."""
    began = time.perf_counter()
    tables = read_live_tables(dsn)
    if tables is None:
        log("no live generation in Postgres: nothing to copy to Redis")
        return CachePublishResult(None, 0, 0, time.perf_counter() - began, None)
    keys = size = 0
    if not client.exists(layout.meta(tables.generation_id)):
        keys, size = write_generation(client, layout, tables)
    flip = flip_pointer(client, layout, tables.generation_id)
    result = CachePublishResult(tables.generation_id, keys, size, time.perf_counter() - began, flip)
    log(
        f"redis: generation {result.generation_id} live ({keys} keys, {size / 1e6:.1f} MB written) in "
        f"{result.seconds:.1f}s; previous {flip.previous}, deleted {list(flip.deleted_generations)}"
    )
    return result
