"""Load one landing file of a feed into ``raw.<table>`` / ``quarantine.<table>`` atomically.

:func:`load_feed_date` is what the ingest DAG calls, once per feed and logical date.  One
transaction (under an advisory lock on the feed and date) replaces the date's rows (or the
whole table for a snapshot feed) in ``raw`` and ``quarantine``, COPYs the new rows in and
appends the attempt to the ledger ``ops.loaded_files``, where it becomes the date's live load.
A file whose sha256 is the live load's is a no-op.  A file with too many rejected records
(:class:`RejectedShareExceeded`) leaves the live rows, their ledger row and their quarantined
records as they were; its own quarantined records and ledger row are committed beside them.

:func:`load_feed_dates` does the same for many dates (backfills, the demo, the benchmark):
a few workers, each on its own connection, parse and COPY dates in parallel; the per-date commits are
flushed to disk once at the end, and the table is analysed once.

Records of users erased on request (``ops.erased_users``, :mod:`recomart.ingest.erasure`) are left out of
raw and quarantine and counted as ``records_erased``; a load that meets a newer erasure at commit prepares
its file again.

The raw rows travel as the file's own bytes (:mod:`recomart.ingest.payload`): the strict parser has
checked every record, so Postgres parses exactly what ``psql \\copy`` would, plus the load metadata.

A load runs in phases: :func:`_prepare` (locate, read, hash, parse; no connection), the ledger check
(:func:`_load_on`), then one of :func:`_load_missing`, :func:`_fail_unreadable` or :func:`_load_parsed`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal, NoReturn

import psycopg

from recomart.errors import BadInputError
from recomart.ingest import ledger, tables
from recomart.ingest.copying import copy_quarantine, copy_raw, raw_payload
from recomart.ingest.erasure import Suppression, leave_out_erased, read_suppression
from recomart.ingest.feeds import Feed
from recomart.ingest.landing import Landing, LandingFileRefused, read_landing_file
from recomart.ingest.parse import FeedSchemaError, ParseResult, parse_feed_bytes
from recomart.ingest.tables import ensure_tables

log = logging.getLogger(__name__)

LoadStatus = Literal["loaded", "empty", "unchanged", "skipped_missing", "failed"]
DEFAULT_WORKERS = 3  # load_feed_dates: dates parsed and COPYed at once (each on its own connection)


class RejectedShareExceeded(BadInputError, RuntimeError):
    """More records were rejected than the feed allows; the quarantine rows are committed."""


class _SuppressionChanged(Exception):
    """Users were erased after the file was prepared: prepare it again with the new list."""


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
    records_erased: int = 0  # records of erased users left out (``recomart.ingest.erasure``)

    @property
    def rejected_share(self) -> float:
        return self.records_rejected / self.records_read if self.records_read else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["logical_date"] = self.logical_date.isoformat()
        out["rejected_share"] = self.rejected_share
        return out


@dataclass(frozen=True)
class LoadRequest:
    """One feed and logical date to load, and how.

    ``durable``: the commit waits for its WAL flush (a batch commits without and flushes once at its end);
    ``analyze``: analyse ``raw.<table>`` afterwards when the load is large (see ``tables.analyze_if_meaningful``);
    ``suppression``: the erased users whose records are left out.
    """

    feed: Feed
    landing: Landing
    logical_date: date
    load_id: str
    durable: bool = True
    analyze: bool = True
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    suppression: Suppression = field(default_factory=Suppression)

    @property
    def path(self) -> Path:
        """The landing file as delivered (before resolving symlinks)."""
        return self.landing.path_for(self.feed, self.logical_date)

    @property
    def source(self) -> str:
        """The landing file relative to the landing folder (``_source_file``, ``source_file``)."""
        return self.feed.relative_path(self.logical_date)

    def attempt(self, status: ledger.LedgerStatus, **details) -> ledger.Attempt:
        """This load's ledger row with ``status``; ``details``: sha256, the counts, error."""
        return ledger.Attempt(
            self.feed.name, self.logical_date, self.source, status, self.started_at, self.load_id, **details
        )

    def result(self, status: LoadStatus, **details) -> LoadResult:
        """This load's :class:`LoadResult`; ``details``: load_id, sha256, the counts, message."""
        return LoadResult(
            **{"load_id": self.load_id, **details},
            feed=self.feed.name,
            logical_date=self.logical_date,
            status=status,
            source_file=self.source,
            path=str(self.path),
        )


@dataclass(frozen=True)
class _Prepared:
    """A landing file located, read, hashed and (unless its sha256 was live already) parsed, off the connection."""

    sha256: str | None = None  # None: no file, or a refused one
    parsed: ParseResult | None = None  # without its good rows: they are in ``raw_payload``
    error: Exception | None = None  # the file was refused or could not be parsed
    raw_payload: memoryview | None = None  # the good records as COPY CSV (``raw_payload``); None: no good rows

    @property
    def missing(self) -> bool:
        return self.sha256 is None and self.error is None

    @property
    def matched_ledger(self) -> bool:
        """The file's sha256 was the live load's, so it was not parsed."""
        return self.sha256 is not None and self.parsed is None and self.error is None


def _prepare(request: LoadRequest, live_sha256: str | None) -> _Prepared:
    """Locate, read, hash and parse the file of ``request`` and build its raw COPY payload (no connection)."""
    try:
        real = request.landing.locate(request.feed, request.logical_date)
        if real is None:
            return _Prepared()
        data = read_landing_file(real)
    except LandingFileRefused as exc:
        return _Prepared(error=exc)
    sha = hashlib.sha256(data).hexdigest()
    if sha == live_sha256:
        return _Prepared(sha)
    try:
        parsed = leave_out_erased(parse_feed_bytes(data, request.feed), request.feed, request.suppression)
    except Exception as exc:  # re-raised by the load, after recording it in the ledger
        return _Prepared(sha, error=exc)
    payload = raw_payload(parsed, request.logical_date, request.load_id, request.source)
    return _Prepared(sha, parsed.without_rows(), raw_payload=payload if parsed.records_loaded else None)


# --- locks and transactions -------------------------------------------------------------------------
def _lock_key(feed: Feed, logical_date: date) -> str:
    return f"recomart.ingest:{feed.name}" + ("" if feed.mode == "snapshot" else f":{logical_date}")


def _lock(conn: psycopg.Connection, request: LoadRequest) -> None:
    """Serialise loads of the same feed and date (of the same feed, for a snapshot feed)."""
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0)), set_config('synchronous_commit', %s, true)",
        (_lock_key(request.feed, request.logical_date), "on" if request.durable else "off"),
    )


def _lock_and_set_load_context(conn: psycopg.Connection, request: LoadRequest) -> None:
    """:func:`_lock`, then transaction-local settings: the feed's time zone and the raw defaults (one statement).

    ``enable_seqscan = off`` keeps the delete of a date on the BRIN index even when the table's
    statistics are stale (a fresh table looks small to the planner until it is analysed).
    Not ``durable``: commit without waiting for the WAL flush (``synchronous_commit = off``, still
    atomic); :func:`load_feed_dates` flushes once before returning or raising.
    """
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0)), set_config('TimeZone', %s, true),"
        " set_config(%s, %s, true), set_config(%s, %s, true), set_config(%s, %s, true),"
        " set_config('synchronous_commit', %s, true), set_config('enable_seqscan', 'off', true)",
        (
            _lock_key(request.feed, request.logical_date),
            request.feed.timezone,
            tables.SETTING_DATE,
            request.logical_date.isoformat(),
            tables.SETTING_LOAD_ID,
            request.load_id,
            tables.SETTING_SOURCE,
            request.source,
            "on" if request.durable else "off",
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


# --- the phases of a load -------------------------------------------------------------------------------
def _unchanged(request: LoadRequest, live: ledger.LedgerEntry, message: str) -> LoadResult:
    """The result of a load that found ``live`` still right for its date (nothing written)."""
    return request.result(
        "unchanged",
        load_id=live.load_id,
        sha256=live.sha256,
        records_read=live.records_read or 0,
        records_loaded=live.records_loaded or 0,
        records_rejected=live.records_rejected or 0,
        records_erased=live.records_erased,
        message=message,
    )


def _load_missing(conn: psycopg.Connection, request: LoadRequest) -> LoadResult:
    """No file: keep a live load (``unchanged``), else record the attempt (``skipped_missing`` or ``failed``).

    A date whose latest attempt was already ``skipped_missing`` is not recorded again (a re-run changes
    nothing).  Raises ``FileNotFoundError`` for a feed whose policy is ``fail``.
    """
    feed = request.feed
    status: ledger.LedgerStatus = "skipped_missing" if feed.on_missing == "skip" else "failed"
    with conn.transaction():
        _lock(conn, request)
        live = ledger.live_entry(conn, feed.name, request.logical_date)
        repeated = status == "skipped_missing" and ledger.latest_status(conn, feed.name, request.logical_date) == status
        if live is None and not repeated:
            ledger.append_attempt(conn, request.attempt(status, error=f"missing file {request.path}"))
    if live is not None:
        return _unchanged(
            request, live, f"{request.path} is no longer in the landing folder; keeping the rows loaded before"
        )
    if feed.on_missing == "fail":
        raise FileNotFoundError(f"feed {feed.name}: landing file for {request.logical_date} not found: {request.path}")
    log.info("feed %s: no file for %s (%s), skipped", feed.name, request.logical_date, request.path)
    return request.result("skipped_missing", message=f"no file at {request.path} (policy skip)")


def _fail_orphaned_attempts(conn: psycopg.Connection, feed: Feed) -> None:
    """Mark ``failed`` the attempts of ``feed`` left ``running`` by a load that died (see :mod:`ledger`)."""
    orphans = ledger.fail_orphaned_attempts(conn, feed.name)
    if orphans:
        log.warning(
            "feed %s: attempts %s were interrupted (server or loader stopped); marked failed", feed.name, orphans
        )


def _record_failure(dsn: str, request: LoadRequest, sha256: str | None, error: str) -> None:
    """Best effort: append a ``failed`` attempt in its own transaction (rows are left as they were), in place
    of the attempt's ``running`` row if it has one.  When the server is gone, that row stays ``running``
    and the next load marks it failed (:func:`ledger.fail_orphaned_attempts`)."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            _lock(conn, request)
            ledger.append_attempt(conn, request.attempt("failed", sha256=sha256, error=error[:2000]))
    except psycopg.Error:
        log.exception(
            "feed %s: could not record the failure of %s in the ledger", request.feed.name, request.logical_date
        )


def _fail_unreadable(dsn: str, request: LoadRequest, prepared: _Prepared) -> NoReturn:
    """Record and raise why the file could not be read or parsed (refused, wrong header, anything else)."""
    error = prepared.error
    assert error is not None
    if isinstance(error, LandingFileRefused):  # its message names the file
        _record_failure(dsn, request, None, str(error))
        raise error
    if isinstance(error, FeedSchemaError):
        _record_failure(dsn, request, prepared.sha256, str(error))
        raise FeedSchemaError(f"{request.path}: {error}") from error
    _record_failure(dsn, request, prepared.sha256, f"{type(error).__name__}: {error}")
    error.add_note(f"while parsing {request.path}")
    raise error


def _load_on(conn: psycopg.Connection, dsn: str, request: LoadRequest, prepared: _Prepared | None = None) -> LoadResult:
    """One feed and date on an open autocommit connection whose tables exist (see :func:`load_feed_date`).

    ``prepared`` (from :func:`load_feed_dates`) is the file already read and parsed unless the ledger
    held its sha256; without it the file is prepared here, after reading the date's live load.
    """
    if prepared is None or prepared.matched_ledger:  # the ledger may say this file is loaded already
        live = ledger.live_entry(conn, request.feed.name, request.logical_date)
        live_sha = live.sha256 if live is not None else None
        if prepared is None:
            prepared = _prepare(request, live_sha)
        if live is not None and prepared.sha256 is not None and prepared.sha256 == live_sha:
            return _unchanged(request, live, f"{request.source} (sha256 {live_sha[:12]}) already loaded")
        if prepared.matched_ledger:  # the ledger changed since the file was prepared
            prepared = _prepare(request, None)
    if prepared.missing:
        return _load_missing(conn, request)
    if prepared.error is not None:
        _fail_unreadable(dsn, request, prepared)
    return _load_parsed(conn, dsn, request, prepared)


def _attempt_of(request: LoadRequest, sha256: str, parsed: ParseResult) -> ledger.Attempt:
    """The ledger row a parsed file commits: ``loaded``, ``empty`` (header only) or ``failed`` (too many
    rejected records; its error says so)."""
    counts = {
        "sha256": sha256,
        "records_read": parsed.records_read,
        "records_rejected": parsed.records_rejected,
        "records_erased": parsed.records_erased,
    }
    feed = request.feed
    if parsed.rejected_share > feed.max_rejected_share:
        error = (
            f"{request.path}: {parsed.records_rejected} of {parsed.records_read} records rejected"
            f" (share {parsed.rejected_share:.4f} > max {feed.max_rejected_share}); rows not loaded,"
            f" see quarantine.{feed.table} where load_id = '{request.load_id}'"
        )
        return request.attempt("failed", records_loaded=0, error=error, **counts)
    status: ledger.LedgerStatus = "loaded" if parsed.records_read else "empty"
    return request.attempt(status, records_loaded=parsed.records_loaded, **counts)


def _commit(
    conn: psycopg.Connection, request: LoadRequest, prepared: _Prepared, attempt: ledger.Attempt
) -> ledger.LedgerEntry | None:
    """The load's transaction.  A live ``attempt`` replaces the date's raw rows and quarantined records;
    a failed one adds its quarantined records, replacing only those of earlier failed attempts.

    Returns the live entry of a concurrent load of the same file that committed first (then this
    transaction is rolled back), else None once committed.  Raises :class:`_SuppressionChanged` (rolled
    back) when users were erased since the file was prepared: ``ops.erased_users`` is read under a SHARE
    lock, which an erasure's insert waits for (and which waits for an erasure in progress).
    Explicit BEGIN/COMMIT share round trips with the statements around them (COPY cannot run in pipeline
    mode): 1) begin, locks, settings, deletes, the live entry read after the lock; 2) the COPYs; 3) BRIN
    summary of the new pages, ledger rows and commit.
    """
    feed, day, parsed = request.feed, request.logical_date, prepared.parsed
    assert parsed is not None
    with conn.pipeline():
        conn.execute("begin")
        _lock_and_set_load_context(conn, request)
        conn.execute("lock table ops.erased_users in share mode")
        listed = conn.execute("select count(*) from ops.erased_users")
        if attempt.live:
            tables.delete_raw_partition(conn, feed, day)
        tables.delete_quarantine_partition(conn, feed, day, keep_live_load=not attempt.live)
        blocks = tables.raw_blocks(conn, feed)
        live = ledger.live_entry(conn, feed.name, day)
    if listed.fetchone()[0] != request.suppression.listed:
        conn.rollback()
        raise _SuppressionChanged
    if live is not None and live.sha256 == attempt.sha256:
        conn.rollback()  # undo the deletes
        return live
    first_block = blocks.fetchone()[0]
    copied = attempt.live and prepared.raw_payload is not None
    if copied:
        copy_raw(conn, feed, parsed, prepared.raw_payload)
    if parsed.records_rejected:
        copy_quarantine(conn, feed, parsed, day, request.load_id, request.source)
    with conn.pipeline():
        if copied:
            tables.summarize_new_pages(conn, feed, first_block)
        ledger.append_attempt(conn, attempt, snapshot=feed.mode == "snapshot")
        conn.execute("commit")
    return None


def _load_parsed(conn: psycopg.Connection, dsn: str, request: LoadRequest, prepared: _Prepared) -> LoadResult:
    """Commit a parsed file (:func:`_commit`); raise :class:`RejectedShareExceeded` after committing a
    rejected one, or record a failed attempt and re-raise when the transaction fails.

    The attempt is in the ledger as ``running`` (:func:`ledger.start_attempt`) before its transaction
    begins, so a load killed with its server still leaves a trace (marked ``failed`` by the next load).
    """
    parsed, sha = prepared.parsed, prepared.sha256
    assert parsed is not None and sha is not None
    attempt = _attempt_of(request, sha, parsed)
    attempt_id = ledger.start_attempt(conn, request.attempt("running", sha256=sha), durable=request.durable)
    try:
        concurrent = _commit(conn, request, prepared, attempt)
        if concurrent is not None:  # before releasing the lock: the row is never seen orphaned
            ledger.discard_attempt(conn, attempt_id)
    except _SuppressionChanged:
        log.info(
            "feed %s %s: users were erased meanwhile; preparing the file again", request.feed.name, request.logical_date
        )
        ledger.discard_attempt(conn, attempt_id)
        fresh = replace(request, suppression=read_suppression(conn, request.suppression.key))
        return _load_on(conn, dsn, fresh)
    except BaseException as exc:  # roll back: rows are as before, the ledger says failed
        _rollback_quietly(conn)
        if isinstance(exc, Exception):
            _record_failure(dsn, request, sha, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        ledger.end_attempt(conn, attempt_id)
    if concurrent is not None:
        return _unchanged(request, concurrent, f"{request.source} already loaded concurrently")
    if not attempt.live:
        raise RejectedShareExceeded(attempt.error)
    if request.analyze:
        tables.analyze_if_meaningful(conn, request.feed, parsed.records_loaded)
    return _committed_result(request, attempt)


def _committed_result(request: LoadRequest, attempt: ledger.Attempt) -> LoadResult:
    """The result of a committed live ``attempt`` (``loaded`` or ``empty``), logged."""
    if attempt.status == "empty":
        message = f"{request.path}: no records (header only); the date now holds no rows"
        log.warning("feed %s %s: %s", request.feed.name, request.logical_date, message)
    else:
        message = f"{attempt.records_loaded} loaded, {attempt.records_rejected} quarantined"
        if attempt.records_erased:
            message += f", {attempt.records_erased} of erased users left out"
        log.info("feed %s %s: %s from %s", request.feed.name, request.logical_date, message, request.source)
    counts = {
        k: getattr(attempt, k)
        for k in ("sha256", "records_read", "records_loaded", "records_rejected", "records_erased")
    }
    return request.result(attempt.status, message=message, **counts)


# --- entry points ------------------------------------------------------------------------------------------
def load_feed_date(
    dsn: str,
    feed: Feed,
    landing_dir: Path,
    logical_date: date,
    *,
    load_id: str | None = None,
    analyze: bool = True,
    link_roots: Sequence[Path] = (),
    erasure_key: bytes | None = None,
) -> LoadResult:
    """Load ``feed``'s file for ``logical_date`` from ``landing_dir`` into the warehouse at ``dsn``.

    Returns a :class:`LoadResult` with status ``loaded``, ``empty`` (a header-only file: the date now
    holds no rows), ``unchanged`` (the live load's sha256, or no file while a load is live: nothing
    touched) or ``skipped_missing``.  Raises ``FileNotFoundError`` for a missing file of a ``fail``
    feed, :class:`LandingFileRefused` for a symlink leaving ``landing_dir`` and ``link_roots`` (the
    folders such links may point into), :class:`FeedSchemaError` for a wrong header and
    :class:`RejectedShareExceeded` (after committing the quarantine rows and a ``failed`` ledger
    row, leaving the live rows as they were) when too many records are rejected.  Every failure
    appends a ``failed`` attempt to the ledger.

    ``analyze``: analyze ``raw.<table>`` afterwards when the load is at least ``tables.ANALYZE_MIN_SHARE`` of
    the table; for many dates use :func:`load_feed_dates` (one analyze, one connection per worker).
    ``erasure_key``: the key of ``ops.erased_users`` (:mod:`recomart.ingest.erasure`): records of erased
    users are left out and counted (``records_erased``); :class:`ErasureKeyError` when users are listed
    and no key, or another key, is given.
    """
    landing = Landing(Path(landing_dir), tuple(map(Path, link_roots)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_tables(conn, feed)
        _fail_orphaned_attempts(conn, feed)
        suppression = read_suppression(conn, erasure_key)
        request = LoadRequest(
            feed, landing, logical_date, load_id or uuid.uuid4().hex, analyze=analyze, suppression=suppression
        )
        return _load_on(conn, dsn, request)


def load_feed_dates(
    dsn: str,
    feed: Feed,
    landing_dir: Path,
    days: Iterable[date],
    *,
    analyze: bool = True,
    workers: int = DEFAULT_WORKERS,
    link_roots: Sequence[Path] = (),
    erasure_key: bytes | None = None,
) -> list[LoadResult]:
    """:func:`load_feed_date` for each of ``days`` (results in that order), analysing once at the end
    (``erasure_key`` as there).

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
    landing = Landing(Path(landing_dir), tuple(map(Path, link_roots)))
    with ExitStack() as stack:
        n_conns = max(1, min(workers, len(days)))
        conns = [stack.enter_context(psycopg.connect(dsn, autocommit=True)) for _ in range(n_conns)]
        ensure_tables(conns[0], feed)
        _fail_orphaned_attempts(conns[0], feed)
        live_sha256s = ledger.live_sha256s(conns[0], feed.name, days)
        suppression = read_suppression(conns[0], erasure_key)

        def load_one(conn: psycopg.Connection, day: date) -> LoadResult:
            request = LoadRequest(
                feed, landing, day, uuid.uuid4().hex, durable=False, analyze=False, suppression=suppression
            )
            return _load_on(conn, dsn, request, _prepare(request, live_sha256s.get(day)))

        try:
            results = _run_in_workers(conns, load_one, days)
        finally:
            _flush_commits(conns[0])  # the dates committed so far are durable, also when one failed
        if analyze and any(r.status in ledger.LIVE_STATUSES for r in results):
            tables.analyze_raw(conns[0], feed)
    return results


def _run_in_workers(
    conns: Sequence[psycopg.Connection],
    load_one: Callable[[psycopg.Connection, date], LoadResult],
    days: Sequence[date],
) -> list[LoadResult]:
    """``load_one(conn, day)`` for each of ``days``, one thread per connection of ``conns`` taking the days
    in order; the results in the order of ``days``.

    The first failure stops handing out days; once the threads have finished their current day, the
    failure of the earliest failed day is raised.
    """
    todo, todo_lock, stop = iter(enumerate(days)), threading.Lock(), threading.Event()
    results: list[LoadResult | None] = [None] * len(days)
    errors: dict[int, BaseException] = {}

    def work(conn: psycopg.Connection) -> None:
        while not stop.is_set():
            with todo_lock:
                i, day = next(todo, (-1, None))
            if day is None:
                return
            try:
                results[i] = load_one(conn, day)
            except BaseException as exc:  # raised below, once the other threads have stopped
                errors[i] = exc
                stop.set()

    with ThreadPoolExecutor(len(conns), thread_name_prefix="recomart-load") as pool:
        try:
            for future in [pool.submit(work, conn) for conn in conns]:
                future.result()
        finally:
            stop.set()  # only matters when interrupted: the threads stop after their current day
    if errors:
        raise errors[min(errors)]
    return [r for r in results if r is not None]
