"""The worker's tables: ``raw.stream_events``, ``quarantine.stream_events``, ``raw.stream_session_clock``,
``raw.exposures``.

Created by the warehouse migrations ``0009_stream_events`` and ``0012_exposures_experiments``
(:mod:`recomart.warehouse`).
``raw.stream_events`` holds each accepted event once (primary key ``event_id``); a redelivered or
re-sent event is dropped by ``insert ... on conflict do nothing``. ``raw.stream_session_clock`` keeps
the event time of each user's last pushed session row, so the next one is at least a second later
(Feast's Redis store drops a row whose second is not newer; ``recomart.features.session``).
"""

from __future__ import annotations

import psycopg

from recomart.warehouse.migrate import migrate_connection

FEED = "stream_events"
"""The feed name of the worker's micro-batches in ``ops.loaded_files``."""

TABLES = (
    "raw.stream_events", "quarantine.stream_events", "raw.stream_session_clock", "ops.loaded_files", "raw.exposures",
)  # fmt: skip
STAGE_DDL = (
    "create temp table if not exists stream_batch (like raw.stream_events including defaults) on commit delete rows"
)
EXPOSURE_STAGE_DDL = (
    "create temp table if not exists stream_exposure_batch (like raw.exposures including defaults)"
    " on commit delete rows"
)


def ensure_stream_tables(conn: psycopg.Connection) -> None:
    """Bring the warehouse to the newest migration (``conn`` idle), then check the tables above exist.

    Raises ``RuntimeError`` naming the missing ones (a warehouse whose schema was changed by hand).
    """
    migrate_connection(conn)
    row = conn.execute("select array(select t from unnest(%s::text[]) t where to_regclass(t) is null)", (list(TABLES),))
    missing = row.fetchone()[0]
    conn.commit()
    if missing:
        raise RuntimeError(f"the warehouse lacks {', '.join(missing)} (migrations 0009, 0012): run ./recomart migrate")
