"""Atomic write-back: COPY into ``<schema>.<name>__staging``, then swap it in by rename in one transaction.

Sequence per publish (one connection, serialised across processes by an advisory lock):

1. ``<name>__staging`` is created and filled with ``COPY … FROM STDIN (FREEZE)`` in the same
   transaction (binary format encoded by :mod:`recomart.recommend.pgbinary` when every column type
   allows, CSV otherwise); a single index is built in that transaction too, several are built
   concurrently on one connection each after a commit; then it is ``ANALYZE``d.
   These steps commit without waiting for their WAL flush (``synchronous_commit = off``): the
   swap's own commit flushes all of it, so nothing reaches readers undurably.  Readers are not
   affected.
2. One transaction (``lock_timeout`` bounded, retried): drop the dependent views, drop
   ``<name>_previous``, rename ``<name>`` → ``<name>_previous`` and ``<name>__staging`` → ``<name>``
   (indexes follow the same names), ``COMMENT ON`` table and columns, grant ``SELECT`` to the
   read-only role, recreate the views, run the caller's ``on_swap`` hook (e.g. mark a generation
   live), commit.

A reader on another connection (READ COMMITTED) sees the old table until the commit and the new one
after it, never an empty or partial table: its statement either finishes before the swap takes its
ACCESS EXCLUSIVE locks or waits for the commit and then resolves the name again.  A REPEATABLE READ
transaction that started before the swap sees the new table's rows too once the name resolves to it
(frozen rows are visible to every snapshot), never an empty table.

Views of other owners on the swapped table follow it to ``<name>_previous`` and are dropped with it
on the next swap; declare the views you need in :class:`TableSpec`.  dbt drops dependants of its own
tables with CASCADE on rebuild, so a declared view reads dbt's tables through a SQL function created by
its ``setup_sql`` (a function body is not a tracked dependency), as ``reco.product_details()`` does.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from recomart.reader_access import READER_ROLE

PUBLISH_LOCK_KEY = 0x7265636F  # advisory lock serialising publishes to the same database
CSV_CHUNK_ROWS = 100_000
BINARY_CHUNK_ROWS = 250_000

_CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'recomart_reader') THEN
        CREATE ROLE recomart_reader LOGIN;  -- its password: recomart.reader_access
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by another session: roles are cluster-wide
END
$$;
"""


@dataclass(frozen=True)
class Index:
    """An index on the swapped table; its name is derived from the table name and its position."""

    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class View:
    """A view recreated on every swap; ``requires`` lists relations it needs (skipped if missing)."""

    name: str
    select_sql: str
    comment: str = ""
    requires: tuple[str, ...] = ()
    setup_sql: str = ""  # run before the view is created (e.g. CREATE OR REPLACE FUNCTION it selects from)


@dataclass(frozen=True)
class TableSpec:
    """A table published by swap.  ``comments`` maps column → comment; the key ``""`` is the table's."""

    schema: str
    name: str
    columns_ddl: tuple[tuple[str, str], ...]
    indexes: tuple[Index, ...] = ()
    comments: Mapping[str, str] = field(default_factory=dict)
    views: tuple[View, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.columns_ddl]

    def ident(self, suffix: str = "") -> sql.Identifier:
        return sql.Identifier(self.schema, self.name + suffix)

    def index_name(self, suffix: str, n: int) -> str:
        return f"{self.name}{suffix}_i{n}"


STAGING, PREVIOUS = "__staging", "_previous"
SET_ASIDE = "__rollback"  # where a rollback parks ``<name>_previous`` inside its swap transaction


def _as_index(index: Index | str | Sequence[str]) -> Index:
    if isinstance(index, Index):
        return index
    if isinstance(index, str):
        return Index(tuple(c.strip() for c in index.split(",")))
    return Index(tuple(index))


# --- roles and loading -------------------------------------------------------------
def ensure_reader_role(conn: psycopg.Connection, log: Callable[[str], Any] = print) -> bool:
    """Create the cluster-wide read-only role if missing; False if it is missing and we may not create it."""
    try:
        conn.execute(_CREATE_ROLE)
        conn.commit()
        return True
    except psycopg.errors.InsufficientPrivilege:
        conn.rollback()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
        conn.commit()
        if not exists:
            log(f"role {READER_ROLE} missing and this user may not create it: grants skipped")
        return bool(exists)


def _copy_stmt(spec: TableSpec, table: sql.Identifier, fmt: str, freeze: bool = True) -> sql.Composed:
    """``COPY … FROM STDIN (FORMAT fmt, FREEZE)``: rows are written frozen, so the index builds and
    ``ANALYZE`` that follow do not rewrite every page to set hint bits.  FREEZE needs the table to
    have been created in the same transaction, which :func:`load_staging` guarantees (``freeze=False``
    for a table created earlier, as a sharded run's shards fill)."""
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {}{})").format(
        table,
        sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
        sql.SQL(fmt),
        sql.SQL(", FREEZE" if freeze else ""),
    )


def _copy_frame(
    cur: psycopg.Cursor, spec: TableSpec, table: sql.Identifier, frame: pd.DataFrame, freeze: bool = True
) -> None:
    """COPY a DataFrame in chunks: binary format when every column type is supported by
    :mod:`recomart.recommend.pgbinary` (numbers travel unformatted), CSV otherwise.  NaN/None → NULL.

    Binary chunks are encoded one ahead on a helper thread, so encoding overlaps the server's ingest.
    """
    from concurrent.futures import ThreadPoolExecutor

    from recomart.recommend import pgbinary

    types = [pgbinary.base_type(ddl) for _, ddl in spec.columns_ddl]
    binary = pgbinary.supports(types)
    stmt = _copy_stmt(spec, table, "binary" if binary else "csv", freeze)
    if not binary:
        frame = frame[spec.columns]
        with cur.copy(stmt) as copy:
            for start in range(0, len(frame), CSV_CHUNK_ROWS):
                buf = io.StringIO()
                frame.iloc[start : start + CSV_CHUNK_ROWS].to_csv(buf, header=False, index=False, na_rep="")
                copy.write(buf.getvalue().encode())
        return
    columns = {c: frame[c] for c in spec.columns}
    starts = list(range(0, len(frame), BINARY_CHUNK_ROWS)) or [0]

    def encode(n: int) -> memoryview:
        lo = starts[n]
        chunk = pd.DataFrame({c: col.iloc[lo : lo + BINARY_CHUNK_ROWS] for c, col in columns.items()}, copy=False)
        return pgbinary.encode(chunk, types, header=n == 0, trailer=n == len(starts) - 1)

    with cur.copy(stmt) as copy, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(encode, 0)
        for n in range(len(starts)):
            data = pending.result()
            if n + 1 < len(starts):
                pending = pool.submit(encode, n + 1)
            copy.write(data)


def _copy_rows(cur: psycopg.Cursor, spec: TableSpec, table: sql.Identifier, rows: Iterable[Sequence]) -> None:
    with cur.copy(_copy_stmt(spec, table, "text")) as copy:
        for row in rows:
            copy.write_row(row)


def _create_index(cur: psycopg.Cursor, spec: TableSpec, n: int, index: Index) -> None:
    cur.execute(
        sql.SQL("CREATE {}INDEX {} ON {} ({})").format(
            sql.SQL("UNIQUE " if index.unique else ""),
            sql.Identifier(spec.index_name(STAGING, n)),
            spec.ident(STAGING),
            sql.SQL(", ").join(map(sql.Identifier, index.columns)),
        )
    )


def _create_indexes_in_parallel(dsn: str, spec: TableSpec) -> None:
    """One connection per index, all at once (CREATE INDEX takes SHARE locks, which do not conflict)."""
    errors: list[BaseException] = []

    def build(n: int, index: Index) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("SET maintenance_work_mem = '256MB'")
                cur.execute("SET synchronous_commit = off")  # flushed by the swap's commit
                _create_index(cur, spec, n, index)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(n, index)) for n, index in enumerate(map(_as_index, spec.indexes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def load_staging(
    conn: psycopg.Connection,
    spec: TableSpec,
    data: pd.DataFrame | Iterable[Sequence],
    *,
    index_dsn: str | None = None,
    log: Callable[[str], Any] | None = None,
) -> int:
    """(Re)create ``<name>__staging`` and COPY ``data`` in (one transaction, ``FREEZE``), build the
    indexes, ``ANALYZE``; commit; return the number of rows COPY loaded.

    With ``index_dsn`` (and more than one index) the loaded table is committed first and its indexes
    are built concurrently on their own connections.  ``log`` receives the time of each phase.
    """
    staging = spec.ident(STAGING)
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        _create_table(cur, spec, staging)
        # the staging table is invisible to readers until the swap, whose commit flushes the WAL
        # written here too: this commit need not wait for its own flush
        cur.execute("SET LOCAL synchronous_commit = off")
        if isinstance(data, pd.DataFrame):
            _copy_frame(cur, spec, staging, data)
        else:
            _copy_rows(cur, spec, staging, data)
        count = max(cur.rowcount, 0)
    t1 = time.perf_counter()
    _index_and_analyze(conn, spec, index_dsn, t1 - t0, log)
    return int(count)


def _create_table(cur: psycopg.Cursor, spec: TableSpec, table: sql.Identifier) -> None:
    """(Re)create ``table`` empty, with ``spec``'s columns (and its schema if missing)."""
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(spec.schema)))
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(table))
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(ddl)) for c, ddl in spec.columns_ddl)
    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(table, cols))


def _index_and_analyze(
    conn: psycopg.Connection,
    spec: TableSpec,
    index_dsn: str | None,
    copy_s: float,
    log: Callable[[str], Any] | None,
) -> None:
    """Build the indexes of ``<name>__staging`` (loaded on ``conn``'s open transaction, or committed
    earlier) and ``ANALYZE`` it; commit.  With ``index_dsn`` and more than one index, the table is
    committed first and its indexes are built concurrently on their own connections."""
    staging = spec.ident(STAGING)
    t1 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")  # index sorts of ~1M rows stay in memory
        if index_dsn is not None and len(spec.indexes) > 1:
            conn.commit()
            cur.execute("SET LOCAL synchronous_commit = off")
            _create_indexes_in_parallel(index_dsn, spec)
        else:
            for n, index in enumerate(map(_as_index, spec.indexes)):
                _create_index(cur, spec, n, index)
        t2 = time.perf_counter()
        cur.execute(sql.SQL("ANALYZE {}").format(staging))
    conn.commit()
    if log is not None:
        t3 = time.perf_counter()
        log(f"staged {spec.schema}.{spec.name}: copy {copy_s:.2f}s, indexes {t2 - t1:.2f}s, analyze {t3 - t2:.2f}s")


def create_table(dsn: str, spec: TableSpec, suffix: str, data: pd.DataFrame | None = None) -> int:
    """(Re)create ``<name><suffix>`` (no indexes) and COPY ``data`` in, frozen, in one transaction;
    return the rows loaded.  A sharded run's tables, filled by several processes before
    :func:`publish_prestaged` swaps them in."""
    table = spec.ident(suffix)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        _create_table(cur, spec, table)
        if data is None:
            return 0
        cur.execute("SET LOCAL synchronous_commit = off")  # flushed by the swap's commit
        _copy_frame(cur, spec, table, data)
        return max(cur.rowcount, 0)


def replace_rows(
    conn: psycopg.Connection, spec: TableSpec, suffix: str, where: sql.Composable, frame: pd.DataFrame
) -> int:
    """In one transaction: delete the rows of ``<name><suffix>`` matching ``where`` (a previous attempt's),
    COPY ``frame`` in, commit; return the rows loaded.  Retrying it never duplicates a row."""
    table = spec.ident(suffix)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")  # flushed by the swap's commit
        cur.execute(sql.SQL("DELETE FROM {} WHERE {}").format(table, where))
        _copy_frame(cur, spec, table, frame, freeze=False)
        return max(cur.rowcount, 0)


def drop_tables(dsn: str, specs: Sequence[TableSpec], suffix: str) -> None:
    """Drop ``<name><suffix>`` of every spec, where it exists."""
    with psycopg.connect(dsn) as conn:
        for spec in specs:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(spec.ident(suffix)))


# --- the swap ----------------------------------------------------------------------------
def _relation_exists(cur: psycopg.Cursor, name: str) -> bool:
    return cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _create_views(cur: psycopg.Cursor, spec: TableSpec, grant: bool, log: Callable[[str], Any]) -> None:
    for view in spec.views:
        missing = [r for r in view.requires if not _relation_exists(cur, r)]
        if missing:
            log(f"view {spec.schema}.{view.name} not created: missing {', '.join(missing)}")
            continue
        ident = sql.Identifier(spec.schema, view.name)
        if view.setup_sql:
            cur.execute(sql.SQL(view.setup_sql))
        cur.execute(sql.SQL("CREATE VIEW {} AS {}").format(ident, sql.SQL(view.select_sql)))
        if view.comment:
            cur.execute(sql.SQL("COMMENT ON VIEW {} IS {}").format(ident, sql.Literal(view.comment)))
        if grant:
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.Identifier(READER_ROLE)))


def _drop_views(cur: psycopg.Cursor, spec: TableSpec) -> None:
    for view in spec.views:
        cur.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(spec.schema, view.name)))


def _rename_indexes(cur: psycopg.Cursor, spec: TableSpec, old: str, new: str, must_exist: bool) -> None:
    for n in range(len(spec.indexes)):
        cur.execute(
            sql.SQL("ALTER INDEX {}{} RENAME TO {}").format(
                sql.SQL("" if must_exist else "IF EXISTS "),
                sql.Identifier(spec.schema, spec.index_name(old, n)),
                sql.Identifier(spec.index_name(new, n)),
            )
        )


def _rename_table(cur: psycopg.Cursor, spec: TableSpec, old: str, new: str, must_exist: bool = True) -> None:
    """Rename ``<name><old>`` (and its indexes) to ``<name><new>``."""
    cur.execute(
        sql.SQL("ALTER TABLE {}{} RENAME TO {}").format(
            sql.SQL("" if must_exist else "IF EXISTS "), spec.ident(old), sql.Identifier(spec.name + new)
        )
    )
    _rename_indexes(cur, spec, old, new, must_exist=must_exist)


def _swap_one(cur: psycopg.Cursor, spec: TableSpec, grant: bool, incoming: str = STAGING) -> None:
    """Make ``<name><incoming>`` live and the live table ``<name>_previous``.  From ``__staging`` the old
    previous table is dropped; from ``_previous`` (a rollback) the two are exchanged."""
    if incoming == PREVIOUS:
        _rename_table(cur, spec, PREVIOUS, SET_ASIDE)
        incoming = SET_ASIDE
    else:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(spec.ident(PREVIOUS)))
    _rename_table(cur, spec, "", PREVIOUS, must_exist=False)
    _rename_table(cur, spec, incoming, "")
    for column, comment in spec.comments.items():
        target = (
            sql.SQL("TABLE {}").format(spec.ident())
            if column == ""
            else sql.SQL("COLUMN {}").format(sql.Identifier(spec.schema, spec.name, column))
        )
        cur.execute(sql.SQL("COMMENT ON {} IS {}").format(target, sql.Literal(comment)))
    if grant:
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(spec.schema), sql.Identifier(READER_ROLE))
        )
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(spec.ident(), sql.Identifier(READER_ROLE)))


def _lock_swapped_relations(cur: psycopg.Cursor, specs: Sequence[TableSpec]) -> None:
    """Take every lock the swap needs in ONE statement: views first (the order a query on a view takes
    them), then the live, previous and staged tables.

    With a statement per lock there is a round trip between the view and the table: a reader polling back
    to back can start its next query in it, take the table, then wait for the view the swap holds, which
    deadlocked every retry of the swap (seen in CI).  Within one statement that gap is gone; a reader that
    takes the table first while the swap starts can still deadlock with it, and the swap retries.
    """
    relations = [(s.schema, v.name) for s in specs for v in s.views]
    relations += [(s.schema, s.name + suffix) for s in specs for suffix in ("", PREVIOUS, STAGING)]
    names = [f'"{schema}"."{name}"' for schema, name in relations]
    query = "SELECT array(SELECT to_regclass(r) IS NOT NULL FROM unnest(%s::text[]) WITH ORDINALITY t(r, n) ORDER BY n)"
    exists = cur.execute(query, (names,)).fetchone()[0]
    present = [sql.Identifier(*r) for r, e in zip(relations, exists, strict=True) if e]
    if present:
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(", ").join(present)))


def _prefer_to_be_deadlock_victim(conn: psycopg.Connection, cur: psycopg.Cursor) -> None:
    """Lower this transaction's ``deadlock_timeout`` so that, in a deadlock with a reader, the swap
    (which retries) notices first and aborts instead of the reader.  Needs superuser or, on PG 15+,
    ``GRANT SET ON PARAMETER deadlock_timeout``; silently skipped otherwise."""
    try:
        with conn.transaction():  # a savepoint: a refusal must not abort the swap
            cur.execute("SET LOCAL deadlock_timeout = '50ms'")
    except psycopg.errors.InsufficientPrivilege:
        pass


def swap_staged(
    conn: psycopg.Connection,
    specs: Sequence[TableSpec],
    *,
    grant: bool = True,
    on_swap: Callable[[psycopg.Cursor], None] | None = None,
    lock_timeout_s: float = 30.0,
    give_up_after_s: float = 120.0,
    incoming: str = STAGING,
    log: Callable[[str], Any] = print,
) -> None:
    """Swap every staged table of ``specs`` in, all in ONE transaction (``incoming=PREVIOUS``: swap every
    ``<name>_previous`` back in instead, keeping the live tables as the new ``_previous``: a rollback).

    Locks are taken views first, then tables (the order a query on a view takes them).  A reader
    whose single statement takes them in the other order can deadlock with the swap; the swap is
    then the victim (see :func:`_prefer_to_be_deadlock_victim`) and is retried with a short jittered
    backoff until ``give_up_after_s``.  The attempts only rename, so each costs milliseconds.
    """
    deadline = time.monotonic() + give_up_after_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with conn.transaction(), conn.cursor() as cur:
                timeout = sql.Literal(f"{int(lock_timeout_s * 1000)}ms")
                cur.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(timeout))
                _prefer_to_be_deadlock_victim(conn, cur)
                _lock_swapped_relations(cur, specs)
                for spec in specs:
                    _drop_views(cur, spec)
                for spec in specs:
                    _swap_one(cur, spec, grant, incoming)
                for spec in specs:
                    _create_views(cur, spec, grant, log)
                if on_swap is not None:
                    on_swap(cur)
            if attempt > 1:
                log(f"swap succeeded on attempt {attempt}")
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
            if time.monotonic() > deadline:
                raise
            log(f"swap attempt {attempt} could not get its locks ({exc.sqlstate}); retrying")
            time.sleep(random.uniform(0.05, min(0.1 * attempt, 1.0)))


@contextmanager
def publish_lock(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Hold the advisory lock that serialises publishes (and rollbacks, and the deletes of ``forget``) to
    one database on ``conn``'s session for a block; the block's open transaction is rolled back after it."""
    conn.execute("SELECT pg_advisory_lock(%s)", (PUBLISH_LOCK_KEY,))
    conn.commit()
    try:
        yield conn
    finally:
        if not conn.closed:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (PUBLISH_LOCK_KEY,))
            conn.commit()


def publish(
    dsn: str,
    tables: Sequence[tuple[TableSpec, pd.DataFrame | Iterable[Sequence]]],
    *,
    on_swap: Callable[[psycopg.Cursor], None] | None = None,
    allow_empty: bool | Collection[str] = False,
    lock_timeout_s: float = 30.0,
    log: Callable[[str], Any] = print,
) -> dict[str, int]:
    """Stage every table, then swap them all in at once; returns row counts by table name.

    Refuses (ValueError, nothing swapped) when a staged table is empty, unless ``allow_empty`` is
    True or names that table.
    """
    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, publish_lock(conn):
        grant = ensure_reader_role(conn, log)
        for spec, data in tables:
            t0 = time.perf_counter()
            counts[spec.name] = load_staging(conn, spec, data, index_dsn=dsn, log=log)
            took = time.perf_counter() - t0
            log(f"staged {spec.schema}.{spec.name}: {counts[spec.name]} rows in {took:.2f}s")
            may_be_empty = allow_empty if isinstance(allow_empty, bool) else spec.name in allow_empty
            if counts[spec.name] == 0 and not may_be_empty:
                raise ValueError(f"{spec.schema}.{spec.name}: staged table is empty, not swapping")
        t0 = time.perf_counter()
        swap_staged(
            conn,
            [s for s, _ in tables],
            grant=grant,
            on_swap=on_swap,
            lock_timeout_s=lock_timeout_s,
            log=log,
        )
        log(f"swapped in {', '.join(s.name for s, _ in tables)} in {time.perf_counter() - t0:.3f}s")
    return counts


def publish_prestaged(
    dsn: str,
    specs: Sequence[TableSpec],
    suffix: str,
    *,
    on_swap: Callable[[psycopg.Cursor, Mapping[str, int]], None] | None = None,
    allow_empty: Collection[str] = (),
    lock_timeout_s: float = 30.0,
    log: Callable[[str], Any] = print,
) -> dict[str, int]:
    """Swap in tables loaded earlier into ``<name><suffix>`` (:func:`create_table`, :func:`replace_rows`):
    under the publish lock each becomes ``<name>__staging``, gets its indexes and ``ANALYZE``, then all
    are swapped in at once as :func:`publish` does (``on_swap`` also receives the row counts); returns
    row counts by table name.

    Refuses (ValueError, nothing swapped) when a table is empty and not in ``allow_empty``.
    """
    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, publish_lock(conn):
        grant = ensure_reader_role(conn, log)
        for spec in specs:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(spec.ident(STAGING)))
                cur.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                        spec.ident(suffix), sql.Identifier(spec.name + STAGING)
                    )
                )
                counts[spec.name] = cur.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(spec.ident(STAGING))
                ).fetchone()[0]
            if counts[spec.name] == 0 and spec.name not in allow_empty:
                raise ValueError(f"{spec.schema}.{spec.name}: staged table is empty, not swapping")
            _index_and_analyze(conn, spec, dsn, 0.0, log)
        t0 = time.perf_counter()
        hook = None if on_swap is None else (lambda cur: on_swap(cur, counts))
        swap_staged(conn, specs, grant=grant, on_swap=hook, lock_timeout_s=lock_timeout_s, log=log)
        log(f"swapped in {', '.join(s.name for s in specs)} in {time.perf_counter() - t0:.3f}s")
    return counts


def swap_in_table(
    dsn: str,
    schema: str,
    name: str,
    df_or_rows: pd.DataFrame | Iterable[Sequence],
    columns_ddl: Sequence[tuple[str, str]],
    indexes: Sequence[Index | str | Sequence[str]] = (),
    comments: Mapping[str, str] | None = None,
    *,
    views: Sequence[View] = (),
    on_swap: Callable[[psycopg.Cursor], None] | None = None,
    allow_empty: bool = False,
    log: Callable[[str], Any] = print,
) -> int:
    """Publish one table by staging + atomic rename (see the module docstring); returns its row count."""
    spec = TableSpec(
        schema,
        name,
        tuple(columns_ddl),
        tuple(_as_index(i) for i in indexes),
        dict(comments or {}),
        tuple(views),
    )
    return publish(dsn, [(spec, df_or_rows)], on_swap=on_swap, allow_empty=allow_empty, log=log)[name]
