"""The catalogue's tables and the statements of one load, all inside the caller's transaction.

``raw.products`` keeps every product ever served: ``active`` is false once a full snapshot no longer
served it (``deactivated_at``, ``deactivated_by_load``), and true again when it reappears.
``quarantine.products`` keeps every invalid record with its key (when it has a readable one) until a
later load resolves it (``resolved_at``, ``resolved_by_load``, ``resolution``).
``ops.catalog_watermark`` holds the watermark, the last full snapshot and the last load's counts.
The warehouse migrations (:mod:`recomart.warehouse`, 0001 and 0003) create all three.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg

LOCK_KEY = 0x5245434F  # pg advisory lock: one catalogue load at a time
FEED = "products"


@dataclass(frozen=True)
class CatalogState:
    """What the last loads left: the watermark, the last full snapshot and the unresolved quarantine keys."""

    watermark: datetime | None
    last_full_at: datetime | None
    unresolved_keys: frozenset[str]


def read_state(conn: psycopg.Connection) -> CatalogState:
    row = conn.execute("select watermark, last_full_at from ops.catalog_watermark where feed = %s", (FEED,)).fetchone()
    keys = conn.execute(
        "select distinct item_id from quarantine.products where resolved_at is null and item_id is not null"
    ).fetchall()
    return CatalogState(row[0] if row else None, row[1] if row else None, frozenset(k for (k,) in keys))


def stage(conn: psycopg.Connection, good: Iterable[tuple]) -> None:
    """COPY the valid records ``(seq, in_range, item_id, title, description, category, brand, price,
    updated_at, payload)`` into the temp table ``_stage_products`` (dropped at commit)."""
    conn.execute(
        "create temp table _stage_products (seq integer not null, in_range boolean not null,"
        " item_id text not null, title text not null, description text, category text not null, brand text,"
        " price numeric not null, updated_at timestamptz not null, payload jsonb not null) on commit drop"
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy _stage_products (seq, in_range, item_id, title, description, category, brand, price, updated_at,"
            " payload) from stdin"
        ) as copy,
    ):
        for row in good:
            copy.write_row(row)


_UPSERT = """
with latest as (
    select distinct on (item_id) item_id, title, description, category, brand, price, updated_at, payload
    from _stage_products order by item_id, updated_at desc, seq desc
)
insert into raw.products as p (item_id, title, description, category, brand, price, updated_at, payload,
                               _load_id, _loaded_at)
select item_id, title, description, category, brand, price, updated_at, payload, %(load_id)s, now()
from latest
on conflict (item_id) do update
    set title = excluded.title, description = excluded.description, category = excluded.category,
        brand = excluded.brand, price = excluded.price, updated_at = excluded.updated_at,
        payload = excluded.payload, _load_id = excluded._load_id, _loaded_at = excluded._loaded_at
    where (p.title, p.description, p.category, p.brand, p.price, p.updated_at, p.payload)
          is distinct from (excluded.title, excluded.description, excluded.category, excluded.brand,
                            excluded.price, excluded.updated_at, excluded.payload)
"""


@dataclass(frozen=True)
class Upserted:
    distinct: int
    inserted: int
    upserted: int
    reactivated: int


def upsert(conn: psycopg.Connection, load_id: str) -> Upserted:
    """Reactivate staged products that were inactive, then upsert ``raw.products`` from the stage
    (a row changes only when something in it changed, so re-running the same catalogue rewrites nothing).

    The staged record wins even when its ``updated_at`` is older than the stored one: loads run one at
    a time for their whole duration (fetch included), so the record fetched last is the catalogue's
    newest word, also when the source moved a timestamp back."""
    with conn.cursor() as cur:
        cur.execute("select count(distinct item_id) from _stage_products")
        distinct = cur.fetchone()[0]
        cur.execute("select count(*) from raw.products p where p.item_id in (select item_id from _stage_products)")
        existing = cur.fetchone()[0]
        cur.execute(
            "update raw.products p set active = true, deactivated_at = null, deactivated_by_load = null,"
            " _load_id = %s, _loaded_at = now()"
            " where not p.active and p.item_id in (select item_id from _stage_products)",
            (load_id,),
        )
        reactivated = cur.rowcount
        cur.execute(_UPSERT, {"load_id": load_id})
        return Upserted(distinct, distinct - existing, cur.rowcount, reactivated)


def resolve_quarantine(
    conn: psycopg.Connection, load_id: str, resolutions: Mapping[str, str], *, supersede_unkeyed: bool
) -> int:
    """Mark earlier unresolved quarantine rows resolved by ``load_id``: those of the keys in
    ``resolutions`` (key -> ``loaded`` or ``absent``), and with ``supersede_unkeyed`` (a full snapshot,
    which re-quarantines whatever is still broken) the rows without a readable key.  Returns the count."""
    with conn.cursor() as cur:
        cur.execute(
            "create temp table _resolutions (item_id text primary key, resolution text not null) on commit drop"
        )
        with cur.copy("copy _resolutions (item_id, resolution) from stdin") as copy:
            for row in resolutions.items():
                copy.write_row(row)
        cur.execute(
            "update quarantine.products q set resolved_at = now(), resolved_by_load = %s, resolution = r.resolution"
            " from _resolutions r where q.item_id = r.item_id and q.resolved_at is null",
            (load_id,),
        )
        resolved = cur.rowcount
        if supersede_unkeyed:
            cur.execute(
                "update quarantine.products set resolved_at = now(), resolved_by_load = %s, resolution = 'superseded'"
                " where item_id is null and resolved_at is null",
                (load_id,),
            )
            resolved += cur.rowcount
    return resolved


def quarantine(conn: psycopg.Connection, load_id: str, bad: Iterable[tuple]) -> None:
    """COPY the invalid records ``(source, line, raw text, reason, key or None)`` into ``quarantine.products``."""
    with (
        conn.cursor() as cur,
        cur.copy(
            "copy quarantine.products (load_id, source_file, line_number, raw_record, reason, item_id) from stdin"
        ) as copy,
    ):
        for row in bad:
            copy.write_row((load_id, *row))


def deactivate_absent(conn: psycopg.Connection, load_id: str, invalid_keys: Iterable[str]) -> int:
    """After a full snapshot: mark inactive every active product that it served neither valid (staged)
    nor invalid (``invalid_keys``); the row stays, with the time and the load.  Returns the count."""
    cur = conn.execute(
        "update raw.products p set active = false, deactivated_at = now(), deactivated_by_load = %s"
        " where p.active and not exists (select 1 from _stage_products s where s.item_id = p.item_id)"
        " and p.item_id <> all(%s::text[])",
        (load_id, list(invalid_keys)),
    )
    return cur.rowcount


@dataclass(frozen=True)
class LoadRecord:
    """What ``ops.catalog_watermark`` records about one load."""

    load_id: str
    source_url: str
    mode: str
    snapshot: str
    as_of: datetime
    fetched: int
    upserted: int
    unchanged: int
    quarantined: int
    resolved: int
    deactivated: int
    reactivated: int


def advance_watermark(conn: psycopg.Connection, record: LoadRecord) -> datetime | None:
    """Move the watermark to the newest valid record of the paged range (never back; records fetched by
    id do not count) and record the load; a full snapshot also records itself as the last one."""
    full = record.mode == "full"
    row = conn.execute(
        """
        insert into ops.catalog_watermark as w (feed, watermark, last_load_id, last_success_at, source_url,
            fetched, upserted, unchanged, quarantined, mode, snapshot, resolved, deactivated, reactivated,
            last_full_at, last_full_load_id)
        values (%(feed)s, (select max(updated_at) from _stage_products where in_range), %(load_id)s, now(),
            %(source_url)s, %(fetched)s, %(upserted)s, %(unchanged)s, %(quarantined)s, %(mode)s, %(snapshot)s,
            %(resolved)s, %(deactivated)s, %(reactivated)s, %(full_at)s, %(full_load)s)
        on conflict (feed) do update
            set watermark = greatest(w.watermark, excluded.watermark),
                last_load_id = excluded.last_load_id, last_success_at = excluded.last_success_at,
                source_url = excluded.source_url, fetched = excluded.fetched, upserted = excluded.upserted,
                unchanged = excluded.unchanged, quarantined = excluded.quarantined, mode = excluded.mode,
                snapshot = excluded.snapshot, resolved = excluded.resolved, deactivated = excluded.deactivated,
                reactivated = excluded.reactivated,
                last_full_at = coalesce(excluded.last_full_at, w.last_full_at),
                last_full_load_id = coalesce(excluded.last_full_load_id, w.last_full_load_id)
        returning watermark
        """,
        {
            **asdict(record),
            "feed": FEED,
            "full_at": record.as_of if full else None,
            "full_load": record.load_id if full else None,
        },
    ).fetchone()
    return row[0]
