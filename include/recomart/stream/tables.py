"""The worker's tables: ``raw.stream_events``, ``quarantine.stream_events``, ``ops.stream_session_clock``.

``raw.stream_events`` holds each accepted event once (primary key ``event_id``); a redelivered or
re-sent event is dropped by ``insert ... on conflict do nothing``. ``ops.stream_session_clock`` keeps
the event time of each user's last pushed session row, so the next one is at least a second later
(Feast's Redis store drops a row whose second is not newer; ``recomart.features.session``).
"""

from __future__ import annotations

import psycopg

from recomart.features.session import log_table_ddl
from recomart.ingest.erasure import create_erased_users
from recomart.ingest.ledger import create_ledger
from recomart.ingest.tables import DDL_LOCK

FEED = "stream_events"
"""The feed name of the worker's micro-batches in ``ops.loaded_files``."""

DDL = (
    "create schema if not exists raw",
    "create schema if not exists quarantine",
    "create schema if not exists ops",
    """create table if not exists raw.stream_events (
        event_id text primary key,
        event_time timestamptz not null,
        user_id text not null,
        item_id text not null,
        event_type text not null check (event_type in ('view', 'add_to_cart', 'purchase')),
        quantity bigint,
        unit_price numeric,
        received_at timestamptz not null,
        _stream_id text not null,
        _load_id text not null,
        _loaded_at timestamptz not null default now()
    )""",
    "create index if not exists stream_events_user_time on raw.stream_events (user_id, event_time)",
    """create table if not exists quarantine.stream_events (
        stream_id text not null,
        raw_record text,
        reason text not null,
        load_id text not null,
        quarantined_at timestamptz not null default now()
    )""",
    """create table if not exists ops.stream_session_clock (
        user_id text primary key,
        row_time timestamptz not null
    )""",
    log_table_ddl(),  # the push source's batch source must exist for Feast's offline reads
)
STAGE_DDL = (
    "create temp table if not exists stream_batch (like raw.stream_events including defaults) on commit delete rows"
)


def ensure_stream_tables(conn: psycopg.Connection) -> None:
    """Create the tables above, the load ledger and ``ops.erased_users`` if missing (under the DDL lock)."""
    found = conn.execute(
        "select to_regclass('raw.stream_events') is not null and to_regclass('ops.stream_session_clock') is not null"
        " and to_regclass('quarantine.stream_events') is not null and to_regclass('ops.loaded_files') is not null"
        " and to_regclass('ops.erased_users') is not null"
    ).fetchone()
    if found is not None and found[0]:
        return
    with conn.transaction():
        conn.execute(DDL_LOCK)
        for statement in DDL:
            conn.execute(statement)
        create_ledger(conn)
        create_erased_users(conn)
