"""The load ledger ``ops.loaded_files``: one row per load attempt of a feed and logical date.

Every attempt that changes something or fails appends a row; an attempt that finds the date as it
was (the live file delivered again, a file still missing) writes nothing, so a re-run leaves the ledger
as it is.  ``is_live`` marks the attempt whose rows ``raw.<table>`` holds: for a daily feed one per
date, for a snapshot feed one per feed.  It moves to a new attempt in the transaction that swaps that
attempt's rows in, so "which load is live for this date" is always answerable::

    select * from ops.loaded_files where feed = 'uci_orders' and logical_date = '2011-12-09' and is_live

The stream worker's micro-batches (feed ``stream_events``, ``recomart.stream.batch``) are append-only:
each adds rows to ``raw.stream_events`` and replaces none, so each is one ``loaded`` row that is never
live (``replaces`` false); ``records_read - records_loaded - records_rejected`` are the redeliveries
it dropped.

Statuses: ``loaded`` and ``empty`` (a header-only file: the date holds no rows) can be live;
``failed`` (rows untouched) and ``skipped_missing`` (no file, policy ``skip``) never are.

An attempt that writes rows is in the ledger from its start: :func:`start_attempt` commits a ``running``
row, whose advisory lock (``ATTEMPT_LOCK_CLASS``, attempt id) the loading session holds, before the load's
transaction begins; that transaction replaces it with the final row (:func:`append_attempt`).  When the
server or the loader dies mid-load, the transaction is rolled back and the ``running`` row stays, without
its lock: the next load of the feed marks it ``failed`` (:func:`fail_orphaned_attempts`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import psycopg
from psycopg.rows import class_row

LedgerStatus = Literal["loaded", "empty", "skipped_missing", "failed", "running"]
LIVE_STATUSES: tuple[LedgerStatus, ...] = ("loaded", "empty")
ATTEMPT_LOCK_CLASS = 0x6C6466  # pg_advisory_lock(ATTEMPT_LOCK_CLASS, attempt id): held while an attempt runs
ORPHANED = "interrupted: the load ended without finishing (server or loader stopped); its rows were rolled back"
_COLUMNS = (
    "feed, logical_date, source_file, sha256, records_read, records_loaded, records_rejected, records_erased,"
    " status, started_at, finished_at, load_id, error"
)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row (one attempt)."""

    feed: str
    logical_date: date
    source_file: str
    sha256: str | None
    records_read: int | None
    records_loaded: int | None
    records_rejected: int | None
    records_erased: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    load_id: str
    error: str | None
    attempt_id: int
    is_live: bool


@dataclass(frozen=True)
class Attempt:
    """A ledger row to append (``finished_at`` is the clock when it is written)."""

    feed: str
    logical_date: date
    source_file: str
    status: LedgerStatus
    started_at: datetime
    load_id: str
    sha256: str | None = None
    records_read: int | None = None
    records_loaded: int | None = None
    records_rejected: int | None = None
    error: str | None = None
    records_erased: int = 0
    replaces: bool = True  # False: an append-only load (a stream micro-batch), never the live one

    @property
    def live(self) -> bool:
        """Whether this attempt's rows replace the live ones (it is committed with them)."""
        return self.replaces and self.status in LIVE_STATUSES


def live_entry(conn: psycopg.Connection, feed: str, logical_date: date) -> LedgerEntry | None:
    """The live attempt of ``feed`` for ``logical_date``, if any."""
    with conn.cursor(row_factory=class_row(LedgerEntry)) as cur:
        cur.execute(
            f"select {_COLUMNS}, attempt_id, is_live from ops.loaded_files"
            " where feed = %s and logical_date = %s and is_live",
            (feed, logical_date),
        )
        return cur.fetchone()


def latest_status(conn: psycopg.Connection, feed: str, logical_date: date) -> str | None:
    """Status of the latest attempt of ``feed`` for ``logical_date``, if any."""
    row = conn.execute(
        "select status from ops.loaded_files where feed = %s and logical_date = %s order by attempt_id desc limit 1",
        (feed, logical_date),
    ).fetchone()
    return None if row is None else row[0]


def append_attempt(conn: psycopg.Connection, attempt: Attempt, *, snapshot: bool = False) -> None:
    """Append ``attempt``; a live one first retires the live attempt of its date (any date, ``snapshot``).

    Call it inside the transaction that commits the attempt's rows, after taking the load lock.  The
    attempt's ``running`` row (:func:`start_attempt`), if any, is replaced by this one.
    Pipeline-friendly statements: a unique index allows one live attempt per date at any moment.
    """
    conn.execute(
        "delete from ops.loaded_files where feed = %s and status = 'running' and load_id = %s",
        (attempt.feed, attempt.load_id),
    )
    if attempt.live:
        conn.execute(
            "update ops.loaded_files set is_live = false where feed = %s and is_live and (%s or logical_date = %s)",
            (attempt.feed, snapshot, attempt.logical_date),
        )
    conn.execute(
        f"insert into ops.loaded_files ({_COLUMNS}, is_live) values (%(feed)s, %(logical_date)s, %(source_file)s,"
        " %(sha256)s, %(records_read)s, %(records_loaded)s, %(records_rejected)s, %(records_erased)s, %(status)s,"
        " %(started_at)s,"
        " clock_timestamp(), %(load_id)s, %(error)s, %(live)s)",
        {**vars(attempt), "live": attempt.live},  # ``replaces`` is not a column: only ``live`` is stored
    )


def live_sha256s(conn: psycopg.Connection, feed: str, days: list[date]) -> dict[date, str]:
    """sha256 of the live file of each of ``days`` that has one (one query for a batch of dates)."""
    rows = conn.execute(
        "select logical_date, sha256 from ops.loaded_files"
        " where feed = %s and logical_date = any(%s) and is_live and sha256 is not null",
        (feed, days),
    ).fetchall()
    return {d: sha for d, sha in rows}


def start_attempt(conn: psycopg.Connection, attempt: Attempt, *, durable: bool = True) -> int:
    """Commit ``attempt`` as a ``running`` row and take its session advisory lock; return its ``attempt_id``.

    ``conn`` must be in autocommit mode and outside a transaction: the row and the lock are taken in one
    statement, so no session ever sees the row without its lock, and the row outlives a crash of the load's
    own transaction.  Not ``durable`` (a batch of dates): the commit does not wait for its WAL flush, which
    the server does within ``3 * wal_writer_delay``, as for the batch's own commits (a crash before that
    loses the row, and nothing else: the load's transaction comes later in the WAL).
    Release the lock with :func:`end_attempt`.
    """
    row = conn.execute(
        f"with started as (insert into ops.loaded_files ({_COLUMNS}, is_live) values (%(feed)s, %(logical_date)s,"
        " %(source_file)s, %(sha256)s, null, null, null, 0, 'running', %(started_at)s, null, %(load_id)s, null,"
        " false) returning attempt_id)"
        " select attempt_id, pg_advisory_lock(%(lock_class)s, (attempt_id %% 2147483647)::int),"
        " set_config('synchronous_commit', %(sync)s, true) from started",
        {**vars(attempt), "lock_class": ATTEMPT_LOCK_CLASS, "sync": "on" if durable else "off"},
    ).fetchone()
    assert row is not None
    return int(row[0])


def discard_attempt(conn: psycopg.Connection, attempt_id: int) -> None:
    """Delete the ``running`` row of an attempt that wrote nothing (a concurrent load did the same, or the
    load starts over: users were erased meanwhile)."""
    conn.execute("delete from ops.loaded_files where attempt_id = %s and status = 'running'", (attempt_id,))


def end_attempt(conn: psycopg.Connection, attempt_id: int) -> None:
    """Release the lock of :func:`start_attempt` (outside a transaction).  On a broken connection there is
    nothing to release: the session, and its lock, are gone."""
    if conn.closed:
        return
    with contextlib.suppress(psycopg.OperationalError):  # it broke meanwhile: the session and its lock ended
        conn.execute("select pg_advisory_unlock(%s, (%s %% 2147483647)::int)", (ATTEMPT_LOCK_CLASS, attempt_id))


def fail_orphaned_attempts(conn: psycopg.Connection, feed: str) -> list[int]:
    """Mark ``failed`` every ``running`` attempt of ``feed`` whose session no longer holds its lock (the
    server or the loader died mid-load; its transaction was rolled back).  Returns their attempt ids.

    An attempt in progress holds its lock, so it is never touched.
    """
    rows = conn.execute(
        "update ops.loaded_files as f set status = 'failed', finished_at = clock_timestamp(), error = %(error)s"
        " where f.feed = %(feed)s and f.status = 'running' and not exists ("
        "  select from pg_locks as l where l.locktype = 'advisory' and l.granted and l.objsubid = 2"
        "   and l.database = (select oid from pg_database where datname = current_database())"
        "   and l.classid = %(lock_class)s::oid and l.objid::bigint = f.attempt_id %% 2147483647)"
        " returning f.attempt_id",
        {"feed": feed, "error": ORPHANED, "lock_class": ATTEMPT_LOCK_CLASS},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)
