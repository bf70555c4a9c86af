"""The tables a feed loads into: ``raw.<table>``, ``quarantine.<table>`` and the ledger.

:func:`ensure_tables` migrates the warehouse (the migrations of :mod:`recomart.warehouse` create
them) and checks a feed's tables; the rest are the set-based statements a load runs on them:
deleting a date's partition, summarising the BRIN ranges a COPY added, and analysing after a large
load.
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql

from recomart.ingest.feeds import Feed
from recomart.warehouse.migrate import migrate_connection

RAW_META_COLUMNS = ("_logical_date", "_load_id", "_source_file", "_line_number", "_loaded_at")
ANALYZE_MIN_SHARE = 0.1
BRIN_PAGES_PER_RANGE = 32  # pages_per_range of every BRIN index of the raw tables (migrations 0001, 0015)
# transaction-local settings of a load, the defaults of raw.<table>'s _logical_date, _load_id, _source_file
SETTING_DATE, SETTING_LOAD_ID, SETTING_SOURCE = "recomart.logical_date", "recomart.load_id", "recomart.source_file"


def _raw_index(feed: Feed) -> str:
    """Name of the BRIN index on ``raw.<table>._logical_date`` (created by the warehouse migrations)."""
    return f"{feed.table}__logical_date_brin"


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
    """Bring the warehouse to the newest schema migration (:mod:`recomart.warehouse.migrate`; one ledger
    read when it is current), then check ``feed``'s tables: raises ``RuntimeError`` when ``raw.<table>``
    or ``quarantine.<table>`` is missing or ``raw.<table>`` lacks columns of ``feed`` (a feed added
    without its migration).  ``conn`` has no transaction open."""
    migrate_connection(conn)
    objects = [f"raw.{feed.table}", f"quarantine.{feed.table}", f"raw.{_raw_index(feed)}"]
    found, columns = _catalog_state(conn, objects, f"raw.{feed.table}")
    missing = (set(feed.column_names) | set(RAW_META_COLUMNS)) - set(columns)
    if found < len(objects) or missing:
        raise RuntimeError(
            f"the warehouse has no tables for feed {feed.name} (raw.{feed.table} missing columns"
            f" {sorted(missing)}, or quarantine.{feed.table} or the BRIN index missing): add them in a migration"
            " (include/recomart/warehouse/migrations) and run ./recomart migrate"
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


def raw_blocks(conn: psycopg.Connection, feed: Feed) -> psycopg.Cursor:
    """The number of blocks of ``raw.<table>`` (fetch it from the returned cursor, e.g. after a pipeline)."""
    return conn.execute(
        "select pg_relation_size(%s::regclass) / current_setting('block_size')::bigint", (f"raw.{feed.table}",)
    )


def summarize_new_pages(conn: psycopg.Connection, feed: Feed, first_block: int) -> None:
    """Summarise, in every BRIN index of ``raw.<table>``, the block ranges from ``first_block`` (the
    table's end before the COPY) to its end.

    So the next delete of a date skips them (``_logical_date``), and an incremental ``int_interactions``
    build and the daily dbt tests read only the blocks of their window (``event_time``, ``_loaded_at``):
    an unsummarised range matches every condition, and autovacuum, which would summarise it later, may be
    off or behind (on this machine's shared server it is off: a 10M-event table stayed unsummarised).
    Only these ranges: ``brin_summarize_new_values`` walks every range of the table, which made a
    backfill quadratic (0.25 s of server time for the 305 UCI days).  Every BRIN index of the raw tables
    has ``BRIN_PAGES_PER_RANGE`` pages per range (migrations 0001, 0015).
    """
    conn.execute(
        "select sum(brin_summarize_range(brin.indexrelid::regclass, b))"
        " from pg_index as brin"
        " join pg_class as index_class on index_class.oid = brin.indexrelid"
        " join pg_am as method on method.oid = index_class.relam and method.amname = 'brin'"
        " cross join generate_series("
        " %(first)s::bigint / %(per)s * %(per)s,"
        " pg_relation_size(%(table)s::regclass) / current_setting('block_size')::bigint - 1, %(per)s) b"
        " where brin.indrelid = %(table)s::regclass",
        {"table": f"raw.{feed.table}", "first": first_block, "per": BRIN_PAGES_PER_RANGE},
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
