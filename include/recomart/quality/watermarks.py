"""How far an incremental Great Expectations suite has validated its table (``ops.gx_validated_until``).

``marts.user_item_ratings`` is rebuilt whole by every ``dbt build``, but between two builds only the
pairs loaded since (``loaded_at``) change other than by their decay to the new ``as_of``, which keeps
every rating in range by construction (the model refuses negative weights or a non-positive
saturation at compile time). So a daily validation reads the pairs loaded after the last validated
one, as dbt's tests of new rows do (``dbt_project/macros/tests/new_rows.sql``); the first run, a run
after a full refresh and a table without ``loaded_at`` read every row.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg import sql

RATINGS_TABLE = "marts.user_item_ratings"
WATERMARKS = "ops.gx_validated_until"
_WATERMARKS = sql.Identifier("ops", "gx_validated_until")


def latest_load(conn: psycopg.Connection, table: str) -> datetime | None:
    """The latest ``loaded_at`` of ``table`` (a trusted ``schema.name``), or None when the table, the
    column or a row is missing."""
    schema, name = table.split(".")
    has_column = conn.execute(
        "select exists (select 1 from information_schema.columns"
        " where table_schema = %s and table_name = %s and column_name = 'loaded_at')",
        (schema, name),
    ).fetchone()[0]
    if not has_column:
        return None
    return conn.execute(sql.SQL("select max(loaded_at) from {}").format(sql.Identifier(schema, name))).fetchone()[0]


def validated_until(conn: psycopg.Connection, suite: str) -> datetime | None:
    """The ``loaded_at`` up to which ``suite`` passed last, or None (no such run, or a warehouse
    without :data:`WATERMARKS`)."""
    if conn.execute("select to_regclass(%s)", (WATERMARKS,)).fetchone()[0] is None:
        return None
    row = conn.execute(sql.SQL("select loaded_until from {} where suite = %s").format(_WATERMARKS), (suite,)).fetchone()
    return row[0] if row else None


def record_validated(conn: psycopg.Connection, suite: str, loaded_until: datetime) -> None:
    """Remember that ``suite`` passed on the rows loaded up to ``loaded_until``."""
    if conn.execute("select to_regclass(%s)", (WATERMARKS,)).fetchone()[0] is None:
        return
    conn.execute(
        sql.SQL(
            "insert into {} (suite, loaded_until) values (%s, %s) on conflict (suite)"
            " do update set loaded_until = excluded.loaded_until, validated_at = now()"
        ).format(_WATERMARKS),
        (suite, loaded_until),
    )
