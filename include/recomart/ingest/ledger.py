"""The load ledger ``ops.loaded_files``: one row per (feed, logical date), upserted by each load."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import psycopg
from psycopg.rows import class_row

LedgerStatus = Literal["loaded", "skipped_missing", "failed"]

LEDGER_DDL = """
create table if not exists ops.loaded_files (
    feed text not null,
    logical_date date not null,
    source_file text not null,
    sha256 text,
    records_read integer,
    records_loaded integer,
    records_rejected integer,
    status text not null check (status in ('loaded', 'skipped_missing', 'failed')),
    started_at timestamptz not null,
    finished_at timestamptz,
    load_id text not null,
    error text,
    primary key (feed, logical_date)
)
"""


@dataclass(frozen=True)
class LedgerEntry:
    feed: str
    logical_date: date
    source_file: str
    sha256: str | None
    records_read: int | None
    records_loaded: int | None
    records_rejected: int | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    load_id: str
    error: str | None


def get_entry(conn: psycopg.Connection, feed: str, logical_date: date) -> LedgerEntry | None:
    """The ledger row of ``feed`` for ``logical_date``, if any."""
    with conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
        cur.execute(
            "select feed, logical_date, source_file, sha256, records_read, records_loaded,"
            " records_rejected, status, started_at, finished_at, load_id, error"
            " from ops.loaded_files where feed = %s and logical_date = %s",
            (feed, logical_date),
        )
        return cur.fetchone()


def upsert_entry(
    conn: psycopg.Connection,
    *,
    feed: str,
    logical_date: date,
    source_file: str,
    status: LedgerStatus,
    started_at: datetime,
    load_id: str,
    sha256: str | None = None,
    records_read: int | None = None,
    records_loaded: int | None = None,
    records_rejected: int | None = None,
    error: str | None = None,
    unless_loaded: bool = False,
) -> bool:
    """Insert or replace the ledger row of (feed, logical_date); ``finished_at`` is the clock now.

    With ``unless_loaded`` a row whose status is ``loaded`` is kept as it is.  Returns whether the row
    was written (reading the answer ends a pipeline's batch).
    """
    cur = conn.execute(
        """
        insert into ops.loaded_files as l (feed, logical_date, source_file, sha256, records_read,
            records_loaded, records_rejected, status, started_at, finished_at, load_id, error)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), %s, %s)
        on conflict (feed, logical_date) do update set
            source_file = excluded.source_file, sha256 = excluded.sha256,
            records_read = excluded.records_read, records_loaded = excluded.records_loaded,
            records_rejected = excluded.records_rejected, status = excluded.status,
            started_at = excluded.started_at, finished_at = excluded.finished_at,
            load_id = excluded.load_id, error = excluded.error
        where not (%s and l.status = 'loaded')
        returning true
        """,
        (
            feed,
            logical_date,
            source_file,
            sha256,
            records_read,
            records_loaded,
            records_rejected,
            status,
            started_at,
            load_id,
            error,
            unless_loaded,
        ),
    )
    return not unless_loaded or cur.fetchone() is not None


def loaded_sha256s(conn: psycopg.Connection, feed: str, days: list[date]) -> dict[date, str]:
    """sha256 of the loaded file of each of ``days`` that has one (one query for a batch of dates)."""
    rows = conn.execute(
        "select logical_date, sha256 from ops.loaded_files"
        " where feed = %s and logical_date = any(%s) and status = 'loaded' and sha256 is not null",
        (feed, days),
    ).fetchall()
    return {d: sha for d, sha in rows}
