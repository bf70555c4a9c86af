"""What an analyst may read: the login role ``recomart_reader`` and its grants.

The role may read the schemas in :data:`READER_SCHEMAS`: the recommendations (``reco``), the dbt
marts (``marts``) and the operational ledger (``ops``: loaded files, model promotions, catalogue
watermarks).  It never reads ``raw`` or ``quarantine`` (personal data as delivered, and rejected
records verbatim), nor dbt's ``staging`` / ``intermediate`` / ``snapshots`` (views and copies of raw).
Default privileges make every table that the pipeline's role creates later in those schemas (a dbt
rebuild, an atomic swap, a new ledger table) readable too.  The role never writes.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import quote

import psycopg
from psycopg import sql

from recomart.config import Settings
from recomart.credentials import scram_matches, scram_verifier, secret

log = logging.getLogger(__name__)

READER_ROLE = "recomart_reader"
READER_SCHEMAS = ("reco", "marts", "ops")
PASSWORD_SECRET = "reader_password"


def reader_password(s: Settings) -> str:
    return secret(s.state_dir, PASSWORD_SECRET)


def reader_url(s: Settings) -> str:
    """libpq URL of the warehouse as ``recomart_reader`` (with its generated password)."""
    parts = s.pg_parts
    host = parts.hostname or "127.0.0.1"
    return (
        f"postgresql://{READER_ROLE}:{quote(reader_password(s), safe='')}@{host}:{parts.port or 5432}/{s.warehouse_db}"
    )


def ensure_reader_login(conn: psycopg.Connection, password: str, *, own_server: bool) -> None:
    """Give the role LOGIN and ``password`` (as a SCRAM verifier: the password never reaches the server).

    On a server RecoMart owns (the embedded one) the password always follows the secrets file; on
    another server a password someone else set is kept, and a role without one gets ours.  ``conn``
    is an autocommit connection of a role that may create roles.
    """
    role = sql.Identifier(READER_ROLE)
    row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
    if row is None:
        # a concurrent session may create it first: roles are cluster-wide
        with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    elif not row[0]:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))  # created NOLOGIN by an earlier RecoMart
    try:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (READER_ROLE,)).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        log.info("may not read pg_authid: the password of %s is left as it is", READER_ROLE)
        return
    if stored[0] is None or (own_server and not scram_matches(password, stored[0])):
        verifier = sql.Literal(scram_verifier(password))
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, verifier))


def grant_reader_access(dsn: str) -> None:
    """Let the reader role read :data:`READER_SCHEMAS` of the database ``dsn``, now and later.

    Creates the schemas if missing (dbt, the warehouse migrations and the writer create them ``IF NOT EXISTS``).
    """
    role = sql.Identifier(READER_ROLE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, role))
        for name in READER_SCHEMAS:
            schema = sql.Identifier(name)
            with contextlib.suppress(psycopg.errors.UniqueViolation):  # created concurrently
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
            conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role))
            conn.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(schema, role)
            )


def ensure_reader(s: Settings) -> None:
    """The reader role with its login (cluster-wide) and its grants in this deployment's warehouse."""
    with psycopg.connect(s.pg_url("postgres"), autocommit=True) as conn:
        ensure_reader_login(conn, reader_password(s), own_server=s.embedded_pg)
    grant_reader_access(s.warehouse_url)
