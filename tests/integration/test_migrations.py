"""Schema migrations (``recomart.warehouse.migrate``): an 8f3b0dd warehouse upgrades without losing data
to exactly the schema a fresh warehouse gets; re-runs do nothing; concurrent starters apply each
version once; a changed applied file or a failing file is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from recomart.config import Settings
from recomart.warehouse.migrate import LOCK_KEY, MIGRATIONS_DIR, MigrationError, available_migrations, migrate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "warehouse_8f3b0dd.sql"
SCHEMAS = ("raw", "quarantine", "ops", "reco")
RUN_TIME_TABLES = {("reco", "user_recommendations")}  # created by each run's swap, not by migrations
LATEST = len(available_migrations())

_COLUMNS = """
select table_schema, table_name, column_name, ordinal_position, data_type, udt_name, is_nullable,
       column_default, is_identity, identity_generation
  from information_schema.columns where table_schema = any(%(schemas)s)
"""
_CONSTRAINTS = """
select n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid)
  from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = any(%(schemas)s)
"""
_INDEXES = "select schemaname, tablename, indexname, indexdef from pg_indexes where schemaname = any(%(schemas)s)"
_COMMENTS = """
select n.nspname, c.relname, coalesce(a.attname, ''), d.description
  from pg_description d join pg_class c on c.oid = d.objoid join pg_namespace n on n.oid = c.relnamespace
  left join pg_attribute a on a.attrelid = c.oid and a.attnum = d.objsubid and d.objsubid > 0
 where n.nspname = any(%(schemas)s) and d.classoid = 'pg_class'::regclass
"""


def schema_of(dsn: str) -> dict[str, list[tuple]]:
    """Columns (types, nullability, defaults, identity), constraints, indexes and comments of the
    project's schemas, without the run-time tables; sorted, so two warehouses compare with ``==``."""
    described: dict[str, list[tuple]] = {}
    with psycopg.connect(dsn) as conn:
        for name, query in (("columns", _COLUMNS), ("constraints", _CONSTRAINTS), ("indexes", _INDEXES)):
            rows = conn.execute(query, {"schemas": list(SCHEMAS)}).fetchall()
            described[name] = sorted(r for r in rows if (r[0], r[1]) not in RUN_TIME_TABLES)
        comments = conn.execute(_COMMENTS, {"schemas": list(SCHEMAS)}).fetchall()
        described["comments"] = sorted(r for r in comments if (r[0], r[1]) not in RUN_TIME_TABLES)
    return described


def _as_text(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def table_rows(dsn: str) -> dict[str, list[dict]]:
    """Every row of every table of the project's schemas, as dicts, in a stable order."""
    found: dict[str, list[dict]] = {}
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
            " where table_schema = any(%s) and table_type = 'BASE TABLE'",
            (list(SCHEMAS),),
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f"select to_jsonb(t) from {table} t").fetchall()  # noqa: S608 - catalog names
            found[table] = sorted((r[0] for r in rows), key=_as_text)
    return found


def load_fixture(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FIXTURE.read_text())


def test_an_8f3b0dd_warehouse_upgrades_without_losing_data_to_the_fresh_schema(private_database) -> None:
    old, fresh = private_database("upgrade_old"), private_database("upgrade_fresh")
    load_fixture(old)
    before = table_rows(old)
    assert sum(map(len, before.values())) >= 20, "the fixture holds rows in raw, quarantine, ops and reco"

    lines: list[str] = []
    result = migrate(old, lines.append)
    assert result.applied == list(range(1, LATEST + 1)) and result.version == LATEST
    assert lines == [f"applied {m.file_name[:-4]}" for m in available_migrations()]
    migrate(fresh)

    assert schema_of(old) == schema_of(fresh)
    after = table_rows(old)
    for table, rows in before.items():  # every old row, every old value: new columns only added
        old_columns = list(rows[0]) if rows else []
        kept = sorted(({k: row[k] for k in old_columns} for row in after[table]), key=_as_text)
        assert kept == rows, table

    with psycopg.connect(old, row_factory=dict_row) as conn:
        ledger = conn.execute(
            "select feed, logical_date::text as day, status, is_live, records_erased from ops.loaded_files"
            " order by attempt_id"
        ).fetchall()
        products = conn.execute("select item_id, active from raw.products order by item_id").fetchall()
        generations = conn.execute("select status, is_live from reco.generations order by generation_id").fetchall()
    live = {(r["feed"], r["day"]) for r in ledger if r["is_live"]}
    # each loaded date is live; of the snapshot feed only its latest load (its rows are the table's)
    assert live == {("generated_events", "2024-03-01"), ("generated_users", "2024-03-02"), ("uci_orders", "2010-12-01")}
    assert {r["records_erased"] for r in ledger} == {0}
    assert products == [{"item_id": "i1", "active": True}, {"item_id": "i2", "active": True}]
    assert generations == [{"status": "superseded", "is_live": False}, {"status": "live", "is_live": True}]


def test_a_second_migrate_applies_nothing_and_changes_nothing(private_database) -> None:
    dsn = private_database("rerun")
    first = migrate(dsn)
    schema = schema_of(dsn)
    assert first.applied == list(range(1, LATEST + 1))
    again = migrate(dsn)
    assert again.applied == [] and again.version == LATEST
    assert schema_of(dsn) == schema
    with psycopg.connect(dsn) as conn:
        ledger = conn.execute("select version, name, checksum from ops.schema_migrations order by version").fetchall()
    assert ledger == [(m.version, m.name, m.checksum) for m in available_migrations()]


def test_the_command_says_when_there_is_nothing_to_do(test_settings: Settings) -> None:
    """``./recomart migrate`` on the module's warehouse, which the fixture already migrated."""
    env = {**os.environ, "RECOMART_DB_PREFIX": test_settings.db_prefix}
    done = subprocess.run(["./recomart", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip().splitlines()[-1] == f"warehouse {test_settings.warehouse_db}: already at version {LATEST}"
    )
    helped = subprocess.run(["./recomart", "migrate", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "ops.schema_migrations" in helped.stdout


def _waiting_on_the_lock(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "select count(*) from pg_locks where locktype = 'advisory' and not granted"
        " and database = (select oid from pg_database where datname = current_database())"
    ).fetchone()
    return int(row[0])


def test_concurrent_starters_apply_each_version_once(private_database) -> None:
    """Two processes start while the migration lock is held, so both race for every version."""
    dsn = private_database("concurrent")
    script = (
        "import json, sys; from recomart.warehouse.migrate import migrate;"
        " print(json.dumps(migrate(sys.argv[1]).applied))"
    )
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
        starters = [
            subprocess.Popen(
                [sys.executable, "-c", script, dsn], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while _waiting_on_the_lock(holder) < 2:
            assert time.monotonic() < deadline, "the two starters never both waited for the lock"
            time.sleep(0.05)
        holder.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
    outputs = [starter.communicate(timeout=120) for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0], [err for _, err in outputs]
    applied = [json.loads(out) for out, _ in outputs]
    assert sorted(applied[0] + applied[1]) == list(range(1, LATEST + 1))  # every version by exactly one
    with psycopg.connect(dsn) as conn:
        versions = [r[0] for r in conn.execute("select version from ops.schema_migrations order by version")]
    assert versions == list(range(1, LATEST + 1))


def test_a_changed_applied_file_is_refused(private_database, tmp_path: Path) -> None:
    dsn = private_database("changed")
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(dsn, folder=folder)
    target = folder / "0003_catalog_lifecycle.sql"
    target.write_text(target.read_text() + "\nalter table raw.products add column colour text;\n")
    with pytest.raises(MigrationError, match=r"migration 0003_catalog_lifecycle\.sql was applied .* must not change"):
        migrate(dsn, folder=folder)
    with psycopg.connect(dsn) as conn:
        added = conn.execute(
            "select count(*) from information_schema.columns where table_name = 'products' and column_name = 'colour'"
        ).fetchone()
    assert added == (0,)


def test_a_failing_file_leaves_nothing_of_itself(private_database, tmp_path: Path) -> None:
    dsn = private_database("failing")
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    broken = folder / f"{LATEST + 1:04d}_broken.sql"
    broken.write_text("create table ops.half_done (id int);\nalter table ops.no_such_table add column x int;\n")
    with pytest.raises(MigrationError, match=rf"migration {broken.name} failed \(nothing of it applied\)"):
        migrate(dsn, folder=folder)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select to_regclass('ops.half_done')").fetchone() == (None,)
        assert conn.execute("select max(version) from ops.schema_migrations").fetchone() == (LATEST,)


def test_a_warehouse_newer_than_the_code_is_refused(private_database, tmp_path: Path) -> None:
    dsn = private_database("newer")
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("insert into ops.schema_migrations (version, name, checksum) values (%s, 'later', 'x')", (99,))
    with pytest.raises(MigrationError, match=r"lists versions \[99\] that this code does not have"):
        migrate(dsn)
