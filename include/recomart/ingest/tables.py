"""The tables a feed loads into: ``raw.<table>``, ``quarantine.<table>`` and the ledger.

:func:`ensure_tables` creates them (and upgrades the ledger) when missing; the rest are the
set-based statements a load runs on them: deleting a date's partition, summarising the BRIN
ranges a COPY added, and analysing after a large load.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql

from recomart.ingest import erasure, ledger
from recomart.ingest.feeds import Feed

RAW_META_COLUMNS = ("_logical_date", "_load_id", "_source_file", "_line_number", "_loaded_at")
ANALYZE_MIN_SHARE = 0.1
BRIN_PAGES_PER_RANGE = 32  # raw.<table>'s BRIN index on _logical_date (a UCI day is ~40 pages)
SETTING_DATE, SETTING_LOAD_ID, SETTING_SOURCE = "recomart.logical_date", "recomart.load_id", "recomart.source_file"


def _raw_ddl(feed: Feed) -> sql.Composed:
    cols = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.pg_type), sql.SQL(" not null" if c.required else "")
        )
        for c in feed.columns
    ]
    # The loader sends the per-load constants with every COPY row (cheaper for the server than evaluating
    # per-row defaults); the defaults from transaction-local settings (``recomart.ingest.load``) stay for
    # tables created by older versions and for manual inserts inside a load context.
    cols += [
        sql.SQL(f"_logical_date date not null default current_setting('{SETTING_DATE}')::date"),
        sql.SQL(f"_load_id text not null default current_setting('{SETTING_LOAD_ID}') check (_load_id <> '')"),
        sql.SQL(f"_source_file text not null default current_setting('{SETTING_SOURCE}') check (_source_file <> '')"),
        sql.SQL("_line_number integer not null"),
        sql.SQL("_loaded_at timestamptz not null default now()"),
    ]
    return sql.SQL("create table if not exists raw.{} ({})").format(
        sql.Identifier(feed.table), sql.SQL(", ").join(cols)
    )


def _quarantine_ddl(feed: Feed) -> sql.Composed:
    return sql.SQL(
        "create table if not exists quarantine.{} (load_id text not null, source_file text not null,"
        " line_number integer not null, raw_record text not null, reason text not null,"
        " quarantined_at timestamptz not null default now(), _logical_date date not null)"
    ).format(sql.Identifier(feed.table))


def _raw_index(feed: Feed) -> str:
    """Name of the BRIN index on ``raw.<table>._logical_date`` (see :func:`_create_tables`)."""
    return f"{feed.table}__logical_date_brin"


def _index_ddl(schema: str, feed: Feed) -> sql.Composed:
    if schema == "raw":
        brin = "create index if not exists {} on raw.{} using brin (_logical_date) with (pages_per_range = {})"
        return sql.SQL(brin).format(
            sql.Identifier(_raw_index(feed)), sql.Identifier(feed.table), sql.Literal(BRIN_PAGES_PER_RANGE)
        )
    return sql.SQL("create index if not exists {} on {}.{} (_logical_date)").format(
        sql.Identifier(f"{feed.table}__logical_date_idx"), sql.Identifier(schema), sql.Identifier(feed.table)
    )


def _catalog_state(conn: psycopg.Connection, objects: list[str], table: str) -> tuple[int, list[str]]:
    """(how many of ``objects`` exist, the columns of ``table``) in one pg_catalog round trip."""
    row = conn.execute(
        "select (select count(to_regclass(o)) from unnest(%s::text[]) o),"
        " array(select a.attname::text from pg_attribute a"
        "       where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped)",
        (objects, table),
    ).fetchone()
    return (0, []) if row is None else (row[0], list(row[1]))


def ensure_tables(conn: psycopg.Connection, feed: Feed) -> None:
    """Create the schemas, ``raw.<table>``, ``quarantine.<table>``, the ledger and ``ops.erased_users`` if
    missing (one catalog query when they exist); upgrade a ledger of an earlier shape.  Raises
    ``RuntimeError`` when ``raw.<table>`` lacks columns of ``feed``."""
    objects = [
        f"raw.{feed.table}",
        f"quarantine.{feed.table}",
        "ops.loaded_files",
        f"ops.{ledger.LIVE_INDEX}",  # missing on a ledger of the previous shape: upgraded by ``_create_tables``
        "ops.erased_users",  # missing before erasure existed: created, and the ledger given records_erased
        f"raw.{_raw_index(feed)}",
        f"quarantine.{feed.table}__logical_date_idx",
    ]
    found, columns = _catalog_state(conn, objects, f"raw.{feed.table}")
    if found < len(objects):  # create only when needed: CREATE INDEX locks the table
        _create_tables(conn, feed)
        found, columns = _catalog_state(conn, objects, f"raw.{feed.table}")
    missing = (set(feed.column_names) | set(RAW_META_COLUMNS)) - set(columns)
    if missing:
        raise RuntimeError(
            f"raw.{feed.table} exists without columns {sorted(missing)} of feed {feed.name}; migrate it first"
        )


def analyze_raw(conn: psycopg.Connection, feed: Feed) -> None:
    conn.execute(sql.SQL("analyze raw.{}").format(sql.Identifier(feed.table)))


def analyze_if_meaningful(conn: psycopg.Connection, feed: Feed, rows: int) -> bool:
    """Analyze when ``rows`` are at least ``ANALYZE_MIN_SHARE`` of the table's estimated size (or it never was).

    Smaller loads are left to autovacuum, whose default analyze threshold is the same 10 %: analysing a
    large table after every small day cost more than the load itself.
    """
    row = conn.execute("select reltuples from pg_class where oid = to_regclass(%s)", (f"raw.{feed.table}",)).fetchone()
    reltuples = float(row[0]) if row else -1.0
    if reltuples >= 0 and rows < ANALYZE_MIN_SHARE * reltuples:
        return False
    analyze_raw(conn, feed)
    return True


def _create_tables(conn: psycopg.Connection, feed: Feed) -> None:
    """Create what :func:`ensure_tables` found missing, under a lock serialising concurrent DDL."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtextextended('recomart.ingest.ddl', 0))")
        for schema in ("raw", "quarantine", "ops"):
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(_raw_ddl(feed))
        # raw: BRIN, not btree (a btree entry per row cost 20-40 % of the COPY's server CPU here).  Each
        # load summarises its new pages (:func:`summarize_new_pages`), so deleting a date reads only the block
        # ranges holding it, whatever autovacuum did.  Older versions created a btree: drop it.
        conn.execute(sql.SQL("drop index if exists raw.{}").format(sql.Identifier(f"{feed.table}__logical_date_idx")))
        conn.execute(_index_ddl("raw", feed))
        conn.execute(_quarantine_ddl(feed))
        conn.execute(_index_ddl("quarantine", feed))
        ledger.create_ledger(conn)
        erasure.create_erased_users(conn)


def raw_blocks(conn: psycopg.Connection, feed: Feed) -> psycopg.Cursor:
    """The number of blocks of ``raw.<table>`` (fetch it from the returned cursor, e.g. after a pipeline)."""
    return conn.execute(
        "select pg_relation_size(%s::regclass) / current_setting('block_size')::bigint", (f"raw.{feed.table}",)
    )


def summarize_new_pages(conn: psycopg.Connection, feed: Feed, first_block: int) -> None:
    """Summarise the BRIN block ranges from ``first_block`` (the table's end before the COPY) to its end.

    So the next delete of a date skips them.  Only these ranges: ``brin_summarize_new_values`` walks every
    range of the table, which made a backfill quadratic (0.25 s of server time for the 305 UCI days).
    """
    conn.execute(
        "select sum(brin_summarize_range(%(index)s::regclass, b)) from generate_series("
        " %(first)s::bigint / %(per)s * %(per)s,"
        " pg_relation_size(%(table)s::regclass) / current_setting('block_size')::bigint - 1, %(per)s) b",
        {
            "index": f"raw.{_raw_index(feed)}",
            "table": f"raw.{feed.table}",
            "first": first_block,
            "per": BRIN_PAGES_PER_RANGE,
        },
    )


def _partition(schema: str, feed: Feed, logical_date: date) -> tuple[sql.Composed, tuple]:
    """``delete from <schema>.<table> where <the date's rows>`` (the whole table for a snapshot feed) and its
    parameters, ready for more conditions."""
    target = sql.SQL("delete from {}.{} where true").format(sql.Identifier(schema), sql.Identifier(feed.table))
    if feed.mode == "snapshot":
        return target, ()
    return target + sql.SQL(" and _logical_date = %s"), (logical_date,)


def delete_raw_partition(conn: psycopg.Connection, feed: Feed, logical_date: date) -> None:
    """Delete the raw rows of ``logical_date`` (all rows for a snapshot feed)."""
    conn.execute(*_partition("raw", feed, logical_date))


def delete_quarantine_partition(
    conn: psycopg.Connection, feed: Feed, logical_date: date, *, keep_live_load: bool = False
) -> None:
    """Delete the quarantined records of ``logical_date`` (all dates for a snapshot feed).

    ``keep_live_load``: keep those of the date's live load (a rejected replacement removes only the
    records of earlier rejected attempts, which its own replace).
    """
    statement, params = _partition("quarantine", feed, logical_date)
    if keep_live_load:
        live = "select load_id from ops.loaded_files where feed = %s and is_live"
        if feed.mode == "snapshot":
            statement += sql.SQL(f" and load_id not in ({live})")
            params += (feed.name,)
        else:
            statement += sql.SQL(f" and load_id not in ({live} and logical_date = %s)")
            params += (feed.name, logical_date)
    conn.execute(statement, params)
