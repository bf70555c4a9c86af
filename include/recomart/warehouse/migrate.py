"""Versioned schema migrations of the warehouse's own schemas (``raw``, ``quarantine``, ``ops``, ``reco``).

The schema is the numbered SQL files in ``migrations/`` (``0001_baseline.sql``, ``0002_...``), applied
in order, each in one transaction together with its row in the ledger ``ops.schema_migrations``
(version, name, sha256 checksum, applied_at).  Every transaction first takes a transaction-level
advisory lock and re-reads the ledger, so starters racing each other apply each version once: the
others wait, then find it applied.  An applied file whose checksum changed is refused
(:class:`MigrationError`): a change to the schema is a new file, never an edit of an applied one.

:func:`migrate` is what ``./recomart migrate`` and every entry point call on start; when the warehouse
is current it costs one read of the ledger and takes no lock.  Tables created per run (the ``reco.*``
swaps of :mod:`recomart.recommend.writer`, dbt's schemas) are not migrated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_KEY = 0x5245434F4D4947  # pg_advisory_xact_lock: one migration transaction at a time per database
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

LEDGER_DDL = """
create schema if not exists ops;
create table if not exists ops.schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
);
comment on table ops.schema_migrations is
    'Applied schema migrations (recomart.warehouse.migrate): one row per numbered SQL file, with its sha256.'
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied: a changed applied file, a gap, or a warehouse newer than the code."""


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file: ``version`` 1 for ``0001_baseline.sql``, ``name`` ``baseline``."""

    version: int
    name: str
    sql: str
    checksum: str  # sha256 (hex) of the file's bytes

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True)
class MigrateResult:
    """What :func:`migrate` did: the versions it applied (in order) and the version the warehouse is at."""

    applied: list[int]
    version: int


def available_migrations(folder: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """The migration files of ``folder`` in version order; raises :class:`MigrationError` on a file
    named otherwise, a duplicate version or a gap (versions must be 1, 2, 3, ...)."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: a migration file is named NNNN_snake_case_name.sql")
        data = path.read_bytes()
        found.append(Migration(int(match[1]), match[2], data.decode("utf-8"), hashlib.sha256(data).hexdigest()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"{folder}: migration versions must run 1, 2, 3, ... without gaps; found {versions}")
    return tuple(found)


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]] | None:
    """``{version: (name, checksum)}`` from the ledger, or None when it does not exist yet."""
    exists = conn.execute("select to_regclass('ops.schema_migrations') is not null").fetchone()
    if exists is None or not exists[0]:
        return None
    rows = conn.execute("select version, name, checksum from ops.schema_migrations").fetchall()
    return {int(version): (name, checksum) for version, name, checksum in rows}


def _check_applied(applied: dict[int, tuple[str, str]], migrations: tuple[Migration, ...]) -> None:
    """Raise :class:`MigrationError` when an applied file changed or the ledger knows versions the code
    does not have."""
    by_version = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(by_version))
    if unknown:
        raise MigrationError(
            f"ops.schema_migrations lists versions {unknown} that this code does not have (it knows up to"
            f" {len(migrations)}): the warehouse was migrated by a newer RecoMart; run that version"
        )
    for version, (name, checksum) in sorted(applied.items()):
        migration = by_version[version]
        if checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.file_name} was applied as {version:04d}_{name}.sql with checksum"
                f" {checksum[:12]}..., but the file now has {migration.checksum[:12]}...: an applied migration"
                f" must not change. Restore the file and put the change in a new numbered file"
            )


def _apply_one(conn: psycopg.Connection, migration: Migration, migrations: tuple[Migration, ...]) -> bool:
    """Apply ``migration`` (one of ``migrations``) in one transaction under the lock unless another
    starter did; return whether this call applied it."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(LEDGER_DDL)
        applied = _applied(conn) or {}
        _check_applied(applied, migrations)
        if migration.version in applied:
            return False
        try:
            conn.execute(migration.sql)
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.file_name} failed (nothing of it applied): {exc}") from exc
        conn.execute(
            "insert into ops.schema_migrations (version, name, checksum) values (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
        return True


def migrate_connection(
    conn: psycopg.Connection, log: Callable[[str], Any] | None = None, folder: Path = MIGRATIONS_DIR
) -> MigrateResult:
    """Bring the warehouse of ``conn`` (idle: no transaction open) to the newest migration of ``folder``.

    ``log`` gets one line per version applied (``applied 0002_ledger_attempts``).  Raises
    :class:`MigrationError` as :func:`available_migrations` and :func:`_check_applied` do, and when a
    file fails (that file's transaction is rolled back: none of it stays).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise MigrationError("migrate needs a connection with no transaction open")
    migrations = available_migrations(folder)
    with conn.transaction():
        applied = _applied(conn) or {}
    _check_applied(applied, migrations)
    done: list[int] = []
    for migration in migrations:
        if migration.version not in applied and _apply_one(conn, migration, migrations):
            done.append(migration.version)
            if log is not None:
                log(f"applied {migration.file_name[:-4]}")
    return MigrateResult(done, len(migrations))


def migrate(dsn: str, log: Callable[[str], Any] | None = None, folder: Path = MIGRATIONS_DIR) -> MigrateResult:
    """:func:`migrate_connection` on a new connection to ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return migrate_connection(conn, log, folder)
