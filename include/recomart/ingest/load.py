"""Load one landing file of a feed into ``raw.<table>`` / ``quarantine.<table>`` atomically.

:func:`load_feed_date` is what the ingest DAG calls, once per feed and logical date.  One
transaction (under an advisory lock on the feed and date) replaces the date's rows (or the
whole table for a snapshot feed) in ``raw`` and ``quarantine``, COPYs the new rows in and
upserts the ledger ``ops.loaded_files``.  A file whose sha256 is already loaded is a no-op.

:func:`load_feed_dates` does the same for many dates (backfills, the demo, the benchmark):
a few workers, each on its own connection, parse and COPY dates in parallel; the per-date commits are
flushed to disk once at the end, and the table is analysed once.

The raw rows travel as the file's own bytes (:mod:`recomart.ingest.payload`): the strict parser has
checked every record, so Postgres parses exactly what ``psql \\copy`` would, plus the load metadata.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
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
from recomart.ingest.payload import csv_fields, records_with_metadata

log = logging.getLogger(__name__)

LoadStatus = Literal["loaded", "unchanged", "skipped_missing", "failed"]
RAW_META_COLUMNS = ("_logical_date", "_load_id", "_source_file", "_line_number", "_loaded_at")
RAW_PAYLOAD_META_COLUMNS = ("_line_number", "_logical_date", "_load_id", "_source_file")  # see _raw_payload
COPY_BATCH_ROWS = 200_000
ANALYZE_MIN_SHARE = 0.1
BRIN_PAGES_PER_RANGE = 32  # raw.<table>'s BRIN index on _logical_date (a UCI day is ~40 pages)
DEFAULT_WORKERS = 3  # load_feed_dates: dates parsed and COPYed at once (each on its own connection)
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
    # The loader sends the per-load constants with every COPY row (cheaper for the server than evaluating
    # per-row defaults); the defaults from transaction-local settings (``_lock_and_set_load_context``) stay for
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
    """Create the schemas, ``raw.<table>``, ``quarantine.<table>`` and the ledger if missing."""
    objects = [
        f"raw.{feed.table}",
        f"quarantine.{feed.table}",
        "ops.loaded_files",
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


def _analyze(conn: psycopg.Connection, feed: Feed) -> None:
    conn.execute(sql.SQL("analyze raw.{}").format(sql.Identifier(feed.table)))


def analyze_feed(dsn: str, feed: Feed) -> None:
    """``analyze`` the feed's raw table (after a batch of loads made with ``analyze=False``)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        _analyze(conn, feed)


def _analyze_if_meaningful(conn: psycopg.Connection, feed: Feed, rows: int) -> bool:
    """Analyze when ``rows`` are at least ``ANALYZE_MIN_SHARE`` of the table's estimated size (or it never was).

    Smaller loads are left to autovacuum, whose default analyze threshold is the same 10 %: analysing a
    large table after every small day cost more than the load itself.
    """
    row = conn.execute("select reltuples from pg_class where oid = to_regclass(%s)", (f"raw.{feed.table}",)).fetchone()
    reltuples = float(row[0]) if row else -1.0
    if reltuples >= 0 and rows < ANALYZE_MIN_SHARE * reltuples:
        return False
    _analyze(conn, feed)
    return True


def _create_tables(conn: psycopg.Connection, feed: Feed) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtextextended('recomart.ingest.ddl', 0))")
        for schema in ("raw", "quarantine", "ops"):
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(_raw_ddl(feed))
        # raw: BRIN, not btree (a btree entry per row cost 20-40 % of the COPY's server CPU here).  Each
        # load summarises its new pages (``_summarize_new_pages``), so deleting a date reads only the block
        # ranges holding it, whatever autovacuum did.  Older versions created a btree: drop it.
        conn.execute(sql.SQL("drop index if exists raw.{}").format(sql.Identifier(f"{feed.table}__logical_date_idx")))
        conn.execute(_index_ddl("raw", feed))
        conn.execute(_quarantine_ddl(feed))
        conn.execute(_index_ddl("quarantine", feed))
        conn.execute(ledger.LEDGER_DDL)


# --- COPY ------------------------------------------------------------------
def _constant(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _encode_csv(data: pa.Table) -> list[pa.Buffer]:
    """``data`` as COPY CSV (no header) in batches of ``COPY_BATCH_ROWS`` rows."""
    options = pacsv.WriteOptions(include_header=False)
    chunks = []
    for batch in data.to_batches(max_chunksize=COPY_BATCH_ROWS):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(batch, sink, write_options=options)
        chunks.append(sink.getvalue())
    return chunks


def _copy_table(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    columns: Sequence[str],
    chunks: Sequence[memoryview | pa.Buffer],
    force_null: Sequence[str] = (),
) -> None:
    """COPY CSV ``chunks`` of ``columns`` into ``schema.table``; quoted empty values of ``force_null`` are NULL."""
    options = sql.SQL("format csv")
    if force_null:
        names = sql.SQL(", ").join(map(sql.Identifier, force_null))
        options = sql.SQL("format csv, force_null ({})").format(names)
    stmt = sql.SQL("copy {}.{} ({}) from stdin ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)), options
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in chunks:
            copy.write(memoryview(chunk))


def _raw_payload(parsed: ParseResult, logical_date: date, load_id: str, source: str) -> memoryview:
    """The COPY CSV payload of the good records: their own bytes, ``_line_number`` and the per-load constants."""
    lines = parsed.good.column(LINE_NUMBER).to_numpy()
    tail = csv_fields([logical_date.isoformat(), load_id, source])
    return records_with_metadata(parsed.text, parsed.good_spans, lines, tail)


def _lock_and_set_load_context(
    conn: psycopg.Connection, feed: Feed, logical_date: date, load_id: str, source: str, durable: bool = True
) -> None:
    """:func:`_lock`, then transaction-local settings: the feed's time zone and the raw defaults (one statement).

    ``enable_seqscan = off`` keeps the delete of a date on the BRIN index even when the table's
    statistics are stale (a fresh table looks small to the planner until it is analysed).
    ``durable=False`` commits without waiting for the WAL flush (``synchronous_commit = off``, still
    atomic); :func:`load_feed_dates` uses it for each date and flushes once before returning or raising.
    """
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0)), set_config('TimeZone', %s, true),"
        " set_config(%s, %s, true), set_config(%s, %s, true), set_config(%s, %s, true),"
        " set_config('synchronous_commit', %s, true), set_config('enable_seqscan', 'off', true)",
        (
            _lock_key(feed, logical_date),
            feed.timezone,
            SETTING_DATE,
            logical_date.isoformat(),
            SETTING_LOAD_ID,
            load_id,
            SETTING_SOURCE,
            source,
            "on" if durable else "off",
        ),
    )


def _rollback_quietly(conn: psycopg.Connection) -> None:
    """End a failed explicit transaction (the connection may be broken: then there is nothing to end)."""
    try:
        if not conn.closed:
            conn.rollback()
    except psycopg.Error:
        log.warning("rollback failed", exc_info=True)


def _flush_commits(conn: psycopg.Connection) -> None:
    """Wait until every earlier commit of this server is on disk: a synchronous commit that assigns a
    transaction id flushes the WAL up to its own commit record, which follows all earlier ones."""
    try:
        conn.execute("select set_config('synchronous_commit', 'on', false), pg_current_xact_id()")
    except psycopg.Error:  # a broken connection: do not hide the error that broke it
        log.warning("could not flush the batch's commits", exc_info=True)


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


def _raw_blocks(conn: psycopg.Connection, feed: Feed) -> psycopg.Cursor:
    """The number of blocks of ``raw.<table>`` (fetch it from the returned cursor, e.g. after a pipeline)."""
    return conn.execute(
        "select pg_relation_size(%s::regclass) / current_setting('block_size')::bigint", (f"raw.{feed.table}",)
    )


def _summarize_new_pages(conn: psycopg.Connection, feed: Feed, first_block: int) -> None:
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


def _delete_partition(conn: psycopg.Connection, schema: str, feed: Feed, logical_date: date) -> int:
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(feed.table))
    if feed.mode == "snapshot":
        cur = conn.execute(sql.SQL("delete from {}").format(target))
    else:
        cur = conn.execute(sql.SQL("delete from {} where _logical_date = %s").format(target), (logical_date,))
    return cur.rowcount


def _lock_key(feed: Feed, logical_date: date) -> str:
    return f"recomart.ingest:{feed.name}" + ("" if feed.mode == "snapshot" else f":{logical_date}")


def _lock(conn: psycopg.Connection, feed: Feed, logical_date: date, durable: bool = True) -> None:
    """Serialise loads of the same feed and date (of the same feed, for a snapshot feed)."""
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0)), set_config('synchronous_commit', %s, true)",
        (_lock_key(feed, logical_date), "on" if durable else "off"),
    )


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
    conn, feed: Feed, path: Path, source: str, logical_date: date, load_id: str, started: datetime, durable: bool
) -> LoadResult:
    with conn.transaction(), conn.pipeline():  # one round trip before the commit
        _lock(conn, feed, logical_date, durable)
        written = ledger.upsert_entry(
            conn,
            feed=feed.name,
            logical_date=logical_date,
            source_file=source,
            status="skipped_missing" if feed.on_missing == "skip" else "failed",
            started_at=started,
            load_id=load_id,
            error=f"missing file {path}",
            unless_loaded=True,
        )
    if not written:  # the date is loaded: keep it
        entry = ledger.get_entry(conn, feed.name, logical_date)
        assert entry is not None
        msg = f"{path} is no longer in the landing folder; keeping the rows loaded before"
        return _unchanged(entry, feed, path, logical_date, msg)
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
    dsn: str, feed: Feed, landing_dir: Path, logical_date: date, *, load_id: str | None = None, analyze: bool = True
) -> LoadResult:
    """Load ``feed``'s file for ``logical_date`` from ``landing_dir`` into the warehouse at ``dsn``.

    Returns a :class:`LoadResult` with status ``loaded``, ``unchanged`` (same sha256 already
    loaded, nothing touched) or ``skipped_missing``.  Raises ``FileNotFoundError`` for a missing
    file of a ``fail`` feed, :class:`FeedSchemaError` for a wrong header and
    :class:`RejectedShareExceeded` (after committing the quarantine rows and a ``failed`` ledger
    row, leaving the raw rows as they were) when too many records are rejected.

    ``analyze``: analyze ``raw.<table>`` afterwards when the load is at least ``ANALYZE_MIN_SHARE`` of
    the table; pass ``False`` when loading many dates and call :func:`analyze_feed` once at the end
    (or use :func:`load_feed_dates`, which also reuses one connection).
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_tables(conn, feed)
        return _load_on(conn, dsn, feed, landing_dir, logical_date, load_id or uuid.uuid4().hex, analyze)


def load_feed_dates(
    dsn: str,
    feed: Feed,
    landing_dir: Path,
    days: Iterable[date],
    *,
    analyze: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> list[LoadResult]:
    """:func:`load_feed_date` for each of ``days`` (results in that order), analysing once at the end.

    Each date is still its own transaction with its own load id and the same checks, so the result for
    each date is the same as loading the dates one by one.  ``workers`` threads, each on its own
    connection, take the dates in order and read, hash, parse and COPY them in parallel (while one is in
    Postgres another parses).  Each date commits without waiting for its WAL flush (still atomic); one
    flush before returning (or raising) makes all of them durable.

    The first failing date stops the batch: no further date is started, the dates in flight finish, and
    the failure is raised.  The dates before it are loaded (not analysed); with ``workers=1`` the dates
    after it are untouched, as in a loop over :func:`load_feed_date`, otherwise the few that were in
    flight may be loaded too (each date is atomic and a re-run skips the loaded ones).
    """
    days = list(days)
    with ExitStack() as stack:
        n_conns = max(1, min(workers, len(days)))
        conns = [stack.enter_context(psycopg.connect(dsn, autocommit=True)) for _ in range(n_conns)]
        ensure_tables(conns[0], feed)
        known = ledger.loaded_sha256s(conns[0], feed.name, days)
        todo, todo_lock, stop = iter(enumerate(days)), threading.Lock(), threading.Event()
        results: list[LoadResult | None] = [None] * len(days)
        errors: dict[int, BaseException] = {}

        def work(conn: psycopg.Connection) -> None:
            while not stop.is_set():
                with todo_lock:
                    i, day = next(todo, (-1, None))
                if day is None:
                    return
                load_id = uuid.uuid4().hex
                try:
                    prepared = _prepare(feed.path_for(Path(landing_dir), day), feed, known.get(day), day, load_id)
                    results[i] = _load_on(conn, dsn, feed, landing_dir, day, load_id, False, prepared)
                except BaseException as exc:  # raised below, once the other workers have stopped
                    errors[i] = exc
                    stop.set()

        pool = stack.enter_context(ThreadPoolExecutor(n_conns, thread_name_prefix="recomart-load"))
        try:
            for future in [pool.submit(work, conn) for conn in conns]:
                future.result()
        finally:
            stop.set()  # only matters when interrupted: the workers stop after their current date
            pool.shutdown()
            _flush_commits(conns[0])  # the dates committed so far are durable, also when one failed
        if errors:
            raise errors[min(errors)]
        if analyze and any(r is not None and r.status == "loaded" for r in results):
            _analyze(conns[0], feed)
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Prepared:
    """A landing file read, hashed and (unless its sha256 was already loaded) parsed, off the connection."""

    sha256: str | None  # None: no file
    parsed: ParseResult | None = None  # without its good rows: they are in ``raw_payload``
    error: Exception | None = None
    raw_payload: memoryview | None = None  # the good records as COPY CSV (``_raw_payload``); None: no good rows

    @property
    def matched_ledger(self) -> bool:
        """The file's sha256 was the ledger's, so it was not parsed."""
        return self.sha256 is not None and self.parsed is None and self.error is None


def _prepare(path: Path, feed: Feed, loaded_sha256: str | None, logical_date: date, load_id: str) -> _Prepared:
    """Read, hash and parse ``path`` and build the raw COPY payload (by each worker of ``load_feed_dates``)."""
    if not path.is_file():
        return _Prepared(None)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha == loaded_sha256:
        return _Prepared(sha)
    try:
        parsed = parse_feed_bytes(data, feed)
    except Exception as exc:  # re-raised by the load, after recording it in the ledger
        return _Prepared(sha, error=exc)
    payload = _raw_payload(parsed, logical_date, load_id, feed.relative_path(logical_date))
    return _Prepared(sha, parsed.without_rows(), raw_payload=payload if parsed.records_loaded else None)


def _load_on(
    conn: psycopg.Connection,
    dsn: str,
    feed: Feed,
    landing_dir: Path,
    logical_date: date,
    load_id: str,
    analyze: bool,
    prepared: _Prepared | None = None,
) -> LoadResult:
    """One feed and date on an open autocommit connection whose tables exist (see :func:`load_feed_date`).

    ``prepared`` (from :func:`load_feed_dates`) is the file already read and parsed unless the ledger
    held its sha256; the loads of a batch are not ``durable`` one by one (the batch flushes at its end).
    """
    started = datetime.now(UTC)
    path = feed.path_for(Path(landing_dir), logical_date)
    source = feed.relative_path(logical_date)
    durable = prepared is None
    if prepared is None or prepared.matched_ledger:  # the ledger may say this file is loaded already
        entry = ledger.get_entry(conn, feed.name, logical_date)
        loaded_sha = entry.sha256 if entry is not None and entry.status == "loaded" else None
        if prepared is None:
            prepared = _prepare(path, feed, loaded_sha, logical_date, load_id)
        if entry is not None and prepared.sha256 is not None and prepared.sha256 == loaded_sha:
            msg = f"{source} (sha256 {prepared.sha256[:12]}) already loaded"
            return _unchanged(entry, feed, path, logical_date, msg)
    sha = prepared.sha256
    if sha is None:
        return _load_missing(conn, feed, path, source, logical_date, load_id, started, durable)
    if prepared.matched_ledger:  # the ledger changed since the file was prepared
        prepared = _prepare(path, feed, None, logical_date, load_id)

    if isinstance(prepared.error, FeedSchemaError):
        _record_failure(dsn, feed, logical_date, source, started, load_id, sha, str(prepared.error))
        raise FeedSchemaError(f"{path}: {prepared.error}") from prepared.error
    if prepared.error is not None:
        error = f"{type(prepared.error).__name__}: {prepared.error}"
        _record_failure(dsn, feed, logical_date, source, started, load_id, sha, error)
        raise prepared.error
    parsed = prepared.parsed
    assert parsed is not None
    exceeded = parsed.rejected_share > feed.max_rejected_share

    concurrent: ledger.LedgerEntry | None = None
    try:
        # Explicit BEGIN/COMMIT so that they share round trips with the statements around them (COPY cannot
        # run in pipeline mode): 1) begin, lock, settings, deletes, the ledger row read after the lock;
        # 2) COPY; 3) BRIN summary of the new pages, ledger upsert and commit.
        with conn.pipeline():
            conn.execute("begin")
            _lock_and_set_load_context(conn, feed, logical_date, load_id, source, durable)
            if not exceeded:
                _delete_partition(conn, "raw", feed, logical_date)
            _delete_partition(conn, "quarantine", feed, logical_date)
            blocks = _raw_blocks(conn, feed)
            entry = ledger.get_entry(conn, feed.name, logical_date)
        if entry is not None and entry.status == "loaded" and entry.sha256 == sha:
            concurrent = entry  # a concurrent load of the same file won: undo the deletes
            conn.rollback()
        else:
            copied = not exceeded and prepared.raw_payload is not None
            first_block = blocks.fetchone()[0]
            if copied:
                columns = [*parsed.columns, *RAW_PAYLOAD_META_COLUMNS]
                _copy_table(conn, "raw", feed.table, columns, [prepared.raw_payload], force_null=parsed.columns)
            if parsed.records_rejected:
                rejected = _quarantine_rows(parsed, logical_date, load_id, source)
                _copy_table(conn, "quarantine", feed.table, rejected.column_names, _encode_csv(rejected))
            message = (
                f"{path}: {parsed.records_rejected} of {parsed.records_read} records rejected"
                f" (share {parsed.rejected_share:.4f} > max {feed.max_rejected_share}); rows not loaded,"
                f" see quarantine.{feed.table} where load_id = '{load_id}'"
                if exceeded
                else ""
            )
            with conn.pipeline():
                if copied:
                    _summarize_new_pages(conn, feed, first_block)
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
                conn.execute("commit")
    except BaseException as exc:  # roll back: rows are as before, the ledger says failed
        _rollback_quietly(conn)
        if isinstance(exc, Exception):
            error = f"{type(exc).__name__}: {exc}"
            _record_failure(dsn, feed, logical_date, source, started, load_id, sha, error)
        raise
    if concurrent is not None:
        return _unchanged(concurrent, feed, path, logical_date, f"{source} already loaded concurrently")

    if exceeded:
        raise RejectedShareExceeded(message)
    if analyze:
        _analyze_if_meaningful(conn, feed, parsed.records_loaded)

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
