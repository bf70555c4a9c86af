"""Load one landing file of a feed into ``raw.<table>`` / ``quarantine.<table>`` atomically.

:func:`load_feed_date` is what the ingest DAG calls, once per feed and logical date.  One
transaction (under an advisory lock on the feed and date) replaces the date's rows (or the
whole table for a snapshot feed) in ``raw`` and ``quarantine``, COPYs the new rows in and
upserts the ledger ``ops.loaded_files``.  A file whose sha256 is already loaded is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from recomart.ingest import ledger
from recomart.ingest.feeds import Feed
from recomart.ingest.parse import LINE_NUMBER, FeedSchemaError, ParseResult, parse_feed_bytes

log = logging.getLogger(__name__)

LoadStatus = Literal["loaded", "unchanged", "skipped_missing", "failed"]
RAW_META_COLUMNS = ("_logical_date", "_load_id", "_source_file", "_line_number", "_loaded_at")
COPY_BATCH_ROWS = 200_000
SETTING_DATE, SETTING_LOAD_ID, SETTING_SOURCE = "recomart.logical_date", "recomart.load_id", "recomart.source_file"


class RejectedShareExceeded(RuntimeError):
    """More records were rejected than the feed allows; the quarantine rows are committed."""


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one :func:`load_feed_date` call (``to_dict`` is JSON-safe, e.g. for XCom)."""

    feed: str
    logical_date: date
    status: LoadStatus
    source_file: str  # relative to the landing folder
    path: str
    load_id: str
    sha256: str | None = None
    records_read: int = 0
    records_loaded: int = 0
    records_rejected: int = 0
    message: str = ""

    @property
    def rejected_share(self) -> float:
        return self.records_rejected / self.records_read if self.records_read else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["logical_date"] = self.logical_date.isoformat()
        out["rejected_share"] = self.rejected_share
        return out


# --- DDL -------------------------------------------------------------------
def _raw_ddl(feed: Feed) -> sql.Composed:
    cols = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.pg_type), sql.SQL(" not null" if c.required else "")
        )
        for c in feed.columns
    ]
    # The per-load constants are not sent with every COPY row (that doubled the COPY time):
    # they default to transaction-local settings that the load sets (see ``_set_load_context``).
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


def _index_ddl(schema: str, feed: Feed) -> sql.Composed:
    return sql.SQL("create index if not exists {} on {}.{} (_logical_date)").format(
        sql.Identifier(f"{feed.table}__logical_date_idx"), sql.Identifier(schema), sql.Identifier(feed.table)
    )


def _existing_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "select column_name from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def ensure_tables(conn: psycopg.Connection, feed: Feed) -> None:
    """Create the schemas, ``raw.<table>``, ``quarantine.<table>`` and the ledger if missing."""
    objects = [
        f"raw.{feed.table}",
        f"quarantine.{feed.table}",
        "ops.loaded_files",
        f"raw.{feed.table}__logical_date_idx",
        f"quarantine.{feed.table}__logical_date_idx",
    ]
    found = conn.execute("select count(to_regclass(o)) from unnest(%s::text[]) o", (objects,)).fetchone()
    if found is None or found[0] < len(objects):  # create only when needed: CREATE INDEX locks the table
        _create_tables(conn, feed)
    expected = set(feed.column_names) | set(RAW_META_COLUMNS)
    missing = expected - set(_existing_columns(conn, "raw", feed.table))
    if missing:
        raise RuntimeError(
            f"raw.{feed.table} exists without columns {sorted(missing)} of feed {feed.name}; migrate it first"
        )


def _create_tables(conn: psycopg.Connection, feed: Feed) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtextextended('recomart.ingest.ddl', 0))")
        for schema in ("raw", "quarantine", "ops"):
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(_raw_ddl(feed))
        conn.execute(_index_ddl("raw", feed))
        conn.execute(_quarantine_ddl(feed))
        conn.execute(_index_ddl("quarantine", feed))
        conn.execute(ledger.LEDGER_DDL)


# --- COPY ------------------------------------------------------------------
def _constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _copy_table(conn: psycopg.Connection, schema: str, table: str, data: pa.Table) -> None:
    """COPY ``data`` (columns named like the target's) into ``schema.table`` as CSV, in batches."""
    stmt = sql.SQL("copy {}.{} ({}) from stdin (format csv)").format(
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, data.column_names)),
    )
    options = pacsv.WriteOptions(include_header=False)
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for batch in data.to_batches(max_chunksize=COPY_BATCH_ROWS):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, write_options=options)
            copy.write(sink.getvalue().to_pybytes())


def _raw_rows(feed: Feed, parsed: ParseResult) -> pa.Table:
    """The COPY payload of raw rows; ``_logical_date``, ``_load_id``, ``_source_file`` come from defaults."""
    return parsed.good.select([*feed.column_names, LINE_NUMBER])


def _set_load_context(conn: psycopg.Connection, feed: Feed, logical_date: date, load_id: str, source: str) -> None:
    """Transaction-local settings: the feed's time zone for naive timestamps and the raw defaults."""
    conn.execute(
        "select set_config('TimeZone', %s, true), set_config(%s, %s, true), set_config(%s, %s, true),"
        " set_config(%s, %s, true)",
        (feed.timezone, SETTING_DATE, logical_date.isoformat(), SETTING_LOAD_ID, load_id, SETTING_SOURCE, source),
    )


def _quarantine_rows(parsed: ParseResult, logical_date: date, load_id: str, source: str) -> pa.Table:
    rejected = parsed.rejected_table()
    n = rejected.num_rows
    return pa.table(
        {
            "load_id": _constant(load_id, n),
            "source_file": _constant(source, n),
            "line_number": rejected.column("line_number"),
            "raw_record": rejected.column("raw_record"),
            "reason": rejected.column("reason"),
            "_logical_date": _constant(logical_date.isoformat(), n),
        }
    )


def _delete_partition(conn: psycopg.Connection, schema: str, feed: Feed, logical_date: date) -> int:
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(feed.table))
    if feed.mode == "snapshot":
        cur = conn.execute(sql.SQL("delete from {}").format(target))
    else:
        cur = conn.execute(sql.SQL("delete from {} where _logical_date = %s").format(target), (logical_date,))
    return cur.rowcount


def _lock(conn: psycopg.Connection, feed: Feed, logical_date: date) -> None:
    """Serialise loads of the same feed and date (of the same feed, for a snapshot feed)."""
    key = f"recomart.ingest:{feed.name}" + ("" if feed.mode == "snapshot" else f":{logical_date}")
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


# --- the load ----------------------------------------------------------------
def _unchanged(entry: ledger.LedgerEntry, feed: Feed, path: Path, logical_date: date, msg: str) -> LoadResult:
    return LoadResult(
        feed=feed.name,
        logical_date=logical_date,
        status="unchanged",
        source_file=entry.source_file,
        path=str(path),
        load_id=entry.load_id,
        sha256=entry.sha256,
        records_read=entry.records_read or 0,
        records_loaded=entry.records_loaded or 0,
        records_rejected=entry.records_rejected or 0,
        message=msg,
    )


def _load_missing(
    conn, feed: Feed, path: Path, source: str, logical_date: date, load_id: str, started: datetime
) -> LoadResult:
    with conn.transaction():
        _lock(conn, feed, logical_date)
        entry = ledger.get_entry(conn, feed.name, logical_date)
        if entry is not None and entry.status == "loaded":
            return _unchanged(
                entry,
                feed,
                path,
                logical_date,
                f"{path} is no longer in the landing folder; keeping the rows loaded before",
            )
        status = "skipped_missing" if feed.on_missing == "skip" else "failed"
        ledger.upsert_entry(
            conn,
            feed=feed.name,
            logical_date=logical_date,
            source_file=source,
            status=status,
            started_at=started,
            load_id=load_id,
            error=f"missing file {path}",
        )
    if feed.on_missing == "fail":
        raise FileNotFoundError(f"feed {feed.name}: landing file for {logical_date} not found: {path}")
    log.info("feed %s: no file for %s (%s), skipped", feed.name, logical_date, path)
    return LoadResult(
        feed=feed.name,
        logical_date=logical_date,
        status="skipped_missing",
        source_file=source,
        path=str(path),
        load_id=load_id,
        message=f"no file at {path} (policy skip)",
    )


def _record_failure(
    dsn: str, feed: Feed, logical_date: date, source: str, started: datetime, load_id: str, sha: str | None, error: str
) -> None:
    """Best effort: mark the ledger row failed in its own transaction (rows are left as they were)."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            _lock(conn, feed, logical_date)
            ledger.upsert_entry(
                conn,
                feed=feed.name,
                logical_date=logical_date,
                source_file=source,
                status="failed",
                started_at=started,
                load_id=load_id,
                sha256=sha,
                error=error[:2000],
            )
    except psycopg.Error:
        log.exception("feed %s: could not record the failure of %s in the ledger", feed.name, logical_date)


def load_feed_date(
    dsn: str, feed: Feed, landing_dir: Path, logical_date: date, *, load_id: str | None = None
) -> LoadResult:
    """Load ``feed``'s file for ``logical_date`` from ``landing_dir`` into the warehouse at ``dsn``.

    Returns a :class:`LoadResult` with status ``loaded``, ``unchanged`` (same sha256 already
    loaded, nothing touched) or ``skipped_missing``.  Raises ``FileNotFoundError`` for a missing
    file of a ``fail`` feed, :class:`FeedSchemaError` for a wrong header and
    :class:`RejectedShareExceeded` (after committing the quarantine rows and a ``failed`` ledger
    row, leaving the raw rows as they were) when too many records are rejected.
    """
    load_id = load_id or uuid.uuid4().hex
    started = datetime.now(UTC)
    path = feed.path_for(Path(landing_dir), logical_date)
    source = feed.relative_path(logical_date)

    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_tables(conn, feed)
        if not path.is_file():
            return _load_missing(conn, feed, path, source, logical_date, load_id, started)

        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        entry = ledger.get_entry(conn, feed.name, logical_date)
        if entry is not None and entry.status == "loaded" and entry.sha256 == sha:
            return _unchanged(entry, feed, path, logical_date, f"{source} (sha256 {sha[:12]}) already loaded")

        try:
            parsed = parse_feed_bytes(data, feed)
        except FeedSchemaError as exc:
            _record_failure(dsn, feed, logical_date, source, started, load_id, sha, str(exc))
            raise FeedSchemaError(f"{path}: {exc}") from exc
        except Exception as exc:
            _record_failure(dsn, feed, logical_date, source, started, load_id, sha, f"{type(exc).__name__}: {exc}")
            raise
        exceeded = parsed.rejected_share > feed.max_rejected_share

        try:
            with conn.transaction():
                _lock(conn, feed, logical_date)
                entry = ledger.get_entry(conn, feed.name, logical_date)  # a concurrent load may have won
                if entry is not None and entry.status == "loaded" and entry.sha256 == sha:
                    msg = f"{source} already loaded concurrently"
                    return _unchanged(entry, feed, path, logical_date, msg)
                _set_load_context(conn, feed, logical_date, load_id, source)
                if not exceeded:
                    _delete_partition(conn, "raw", feed, logical_date)
                    _copy_table(conn, "raw", feed.table, _raw_rows(feed, parsed))
                _delete_partition(conn, "quarantine", feed, logical_date)
                _copy_table(conn, "quarantine", feed.table, _quarantine_rows(parsed, logical_date, load_id, source))
                message = (
                    f"{path}: {parsed.records_rejected} of {parsed.records_read} records rejected"
                    f" (share {parsed.rejected_share:.4f} > max {feed.max_rejected_share}); rows not loaded,"
                    f" see quarantine.{feed.table} where load_id = '{load_id}'"
                    if exceeded
                    else ""
                )
                ledger.upsert_entry(
                    conn,
                    feed=feed.name,
                    logical_date=logical_date,
                    source_file=source,
                    status="failed" if exceeded else "loaded",
                    started_at=started,
                    load_id=load_id,
                    sha256=sha,
                    records_read=parsed.records_read,
                    records_loaded=0 if exceeded else parsed.records_loaded,
                    records_rejected=parsed.records_rejected,
                    error=message or None,
                )
        except Exception as exc:  # the transaction rolled back: rows are as before, the ledger says failed
            error = f"{type(exc).__name__}: {exc}"
            _record_failure(dsn, feed, logical_date, source, started, load_id, sha, error)
            raise

        if exceeded:
            raise RejectedShareExceeded(message)
        conn.execute(sql.SQL("analyze raw.{}").format(sql.Identifier(feed.table)))

    log.info(
        "feed %s %s: %d read, %d loaded, %d quarantined from %s",
        feed.name,
        logical_date,
        parsed.records_read,
        parsed.records_loaded,
        parsed.records_rejected,
        source,
    )
    return LoadResult(
        feed=feed.name,
        logical_date=logical_date,
        status="loaded",
        source_file=source,
        path=str(path),
        load_id=load_id,
        sha256=sha,
        records_read=parsed.records_read,
        records_loaded=parsed.records_loaded,
        records_rejected=parsed.records_rejected,
        message=f"{parsed.records_loaded} loaded, {parsed.records_rejected} quarantined",
    )
