"""``./recomart forget user <id>``: remove a user's personal data everywhere the platform keeps it.

In this order, each step idempotent (running the command again finishes an interrupted erasure):

1. ``ops.erasures`` gets an audit row (status ``running``); the user's keyed hash goes on the
   suppression list ``ops.erased_users`` (:mod:`recomart.ingest.erasure`), as the first statement of
   the warehouse transaction: it waits for loads in progress and holds new ones off until the commit,
   after which every load leaves the user's records out and counts them (``records_erased``);
2. in that transaction: the user's rows of every raw table with a user column (each feed's user
   column, in the feed's id format, plus any other ``raw`` table with a ``user_id`` column: the
   stream's ``raw.stream_events``, ``raw.stream_session_clock``, ``raw.user_session_features``); their
   quarantined records, found by parsing each record's user field at its position in the file's
   column order (never by substring: ``C0008`` must not hit ``C00080``), and their quarantined stream
   entries (``quarantine.stream_events.user_id``, the payload's field; an entry whose payload is not
   JSON names no user and stays); and their rows in every dbt
   table with a ``user_id`` column (``marts``, ``intermediate``, ``snapshots``), including the
   incremental ``*_history`` marts, which a build only recomputes for its last days;
   ``marts.item_features_history``, whose counts carry the user over from day to day, loses its
   rows from the user's first interaction day on (the next build recomputes them);
3. ``reco.*`` tables with a ``user_id`` column (the live ones and ``*_previous``), after waiting for
   any generation being built (it may have read the user before step 2) and under the publish lock;
   then the user's lists in the Redis copy of the generations the API serves (``recommend.cache``);
4. the Feast online store: the user's entity key, deleted with Feast's key encoding and client
   (:func:`recomart.features.delete_online_entities`);
5. registered model versions whose artifact stores the user (SVD factors, evaluation factors): tagged
   ``erased_user_data`` in MLflow and listed in ``ops.erased_model_versions``.  The next training reads
   the marts, which no longer hold the user; retrain, then delete the tagged versions you do not need.

The audit row ends ``completed`` with a count per place (or ``failed`` with the error).  It keeps the
keyed hash, never the id, plus who ran it and why.
"""

from __future__ import annotations

import csv
import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from recomart.config import Settings
from recomart.credentials import persistent_secret, secrets_dir
from recomart.ingest.erasure import (
    KEY_FILE,
    canonical_user_id,
    key_id,
    new_erasure_key,
    record_user_id,
    user_id_forms,
    user_key,
)
from recomart.ingest.feeds import FEEDS, Feed
from recomart.recommend.tables import wait_for_builds
from recomart.recommend.writer import publish_lock
from recomart.warehouse.migrate import migrate_connection

DBT_SCHEMAS = ("marts", "intermediate", "snapshots")


@dataclass
class ErasureSummary:
    """What one erasure removed: rows (keys, versions) per place, keyed like ``raw.events``."""

    erasure_id: int
    user_key: str
    counts: dict[str, int] = field(default_factory=dict)
    model_versions: list[str] = field(default_factory=list)
    waited_for_generations: list[int] = field(default_factory=list)


def _open_erasure(dsn: str, key: str, requested_by: str, reason: str | None) -> int:
    with psycopg.connect(dsn) as conn:
        migrate_connection(conn)
        row = conn.execute(
            "insert into ops.erasures (requested_by, user_key, reason) values (%s, %s, %s) returning erasure_id",
            (requested_by, key, reason),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _close_erasure(dsn: str, summary: ErasureSummary, error: str | None = None) -> None:
    counts = {**summary.counts, "model_versions": len(summary.model_versions)}
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "update ops.erasures set finished_at = now(), status = %s, counts = %s, error = %s where erasure_id = %s",
            ("failed" if error else "completed", Jsonb(counts), error, summary.erasure_id),
        )


# --- the warehouse ---------------------------------------------------------------------------------
def _exists(conn: psycopg.Connection, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone() == (True,)


def _base_tables_with(conn: psycopg.Connection, schemas: tuple[str, ...], column: str) -> list[tuple[str, str]]:
    """(schema, table) of every ordinary or partitioned table of ``schemas`` with a column ``column``."""
    return conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " join pg_attribute a on a.attrelid = c.oid and a.attname = %s and not a.attisdropped"
        " where n.nspname = any(%s) and c.relkind in ('r', 'p') order by 1, 2",
        (column, list(schemas)),
    ).fetchall()


def _delete_where_in(conn: psycopg.Connection, schema: str, table: str, column: str, values: list[str]) -> int:
    if not values:
        return 0
    statement = sql.SQL("delete from {} where {} = any(%s)").format(
        sql.Identifier(schema, table), sql.Identifier(column)
    )
    return conn.execute(statement, (values,)).rowcount


def _raw_values(conn: psycopg.Connection, feed: Feed, user_id: str) -> list[str]:
    """The raw values of ``feed``'s user column that stand for ``user_id`` (one distinct scan when the
    feed's ids are not written as the warehouse writes them)."""
    assert feed.user_column is not None
    wanted = canonical_user_id(feed, user_id)
    if wanted is None:
        return []
    if feed.user_id_format == "text":
        return [wanted]
    statement = sql.SQL("select distinct {col} from {table} where {col} is not null").format(
        col=sql.Identifier(feed.user_column), table=sql.Identifier("raw", feed.table)
    )
    return [value for (value,) in conn.execute(statement) if canonical_user_id(feed, value) == wanted]


def _file_columns(landing_dir: Path, source_file: str, feed: Feed) -> tuple[str, ...]:
    """The column order of a landing file (its header), or the feed's declared order when unreadable."""
    by_header = {column.header: column.name for column in feed.columns}
    try:
        with (landing_dir / source_file).open(newline="", encoding="utf-8-sig") as handle:
            header = [h.strip() for h in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        header = []
    if sorted(header) != sorted(by_header):
        return tuple(feed.column_names)
    return tuple(by_header[h] for h in header)


def _delete_quarantined(conn: psycopg.Connection, feed: Feed, user_id: str, landing_dir: Path) -> int:
    """Delete the user's quarantined records of ``feed``: those whose user field (by position in the
    file's column order) is the user.  Returns how many."""
    wanted = canonical_user_id(feed, user_id)
    rows = conn.execute(
        sql.SQL("select load_id, line_number, source_file, raw_record from {}").format(
            sql.Identifier("quarantine", feed.table)
        )
    ).fetchall()
    columns: dict[str, tuple[str, ...]] = {}
    loads, lines = [], []
    for load_id, line, source, raw in rows:
        order = columns.setdefault(source, _file_columns(landing_dir, source, feed))
        if wanted is not None and record_user_id(feed, order, raw) == wanted:
            loads.append(load_id)
            lines.append(line)
    if not loads:
        return 0
    statement = sql.SQL(
        "delete from {} q using unnest(%s::text[], %s::int[]) as r(load_id, line_number)"
        " where q.load_id = r.load_id and q.line_number = r.line_number"
    ).format(sql.Identifier("quarantine", feed.table))
    return conn.execute(statement, (loads, lines)).rowcount


def _erase_raw_and_quarantine(conn: psycopg.Connection, user_id: str, landing_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    feeds = {feed.table: feed for feed in FEEDS.values() if feed.user_column is not None}
    for table, feed in sorted(feeds.items()):
        if not _exists(conn, f"raw.{table}"):
            continue
        assert feed.user_column is not None
        counts[f"raw.{table}"] = _delete_where_in(
            conn, "raw", table, feed.user_column, _raw_values(conn, feed, user_id)
        )
        if _exists(conn, f"quarantine.{table}"):
            counts[f"quarantine.{table}"] = _delete_quarantined(conn, feed, user_id, landing_dir)
    forms = sorted(user_id_forms(user_id) | {user_id})
    for schema, table in _base_tables_with(conn, ("raw", "quarantine"), "user_id"):
        if table not in feeds:  # tables of no file feed: the stream's events, session rows, quarantined entries
            counts[f"{schema}.{table}"] = _delete_where_in(conn, schema, table, "user_id", forms)
    return counts


def _rewind_item_history(conn: psycopg.Connection, forms: list[str]) -> int:
    """Delete the rows of ``marts.item_features_history`` from the user's first interaction day on.

    Its counts (pop_<n>d, distinct_buyers, revenue) carry over from day to day, so those rows hold the
    user; the next build's window starts at the latest day left and recomputes the days after it
    without the user. Run before the user's ``int_interactions`` rows are deleted. Returns the rows
    deleted."""
    if not (_exists(conn, "marts.item_features_history") and _exists(conn, "intermediate.int_interactions")):
        return 0
    return conn.execute(
        "delete from marts.item_features_history where as_of_date >= ("
        " select min(event_date) from intermediate.int_interactions where user_id = any(%s))",
        (forms,),
    ).rowcount


def _erase_warehouse(dsn: str, user_id: str, key: bytes, erasure_id: int, landing_dir: Path) -> dict[str, int]:
    """One transaction: the suppression rows first (see the module docstring), then raw, quarantine and
    every dbt table with a ``user_id`` column."""
    forms = sorted(user_id_forms(user_id))
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "insert into ops.erased_users (user_key, key_id, erasure_id) select unnest(%s::text[]), %s, %s"
            " on conflict (user_key) do nothing",
            ([user_key(key, form) for form in forms], key_id(key), erasure_id),
        )
        counts = _erase_raw_and_quarantine(conn, user_id, landing_dir)
        counts["marts.item_features_history (rewound)"] = _rewind_item_history(conn, forms)
        for schema, table in _base_tables_with(conn, DBT_SCHEMAS, "user_id"):
            counts[f"{schema}.{table}"] = _delete_where_in(conn, schema, table, "user_id", forms)
    return counts


def _erase_recommendations(dsn: str, user_id: str, log: Callable[[str], Any]) -> tuple[dict[str, int], list[int]]:
    """Wait for generations being built, then delete the user from every ``reco`` table under the publish
    lock; returns (rows per table, the generations waited for)."""
    forms = sorted(user_id_forms(user_id))
    with psycopg.connect(dsn) as conn:
        waited = wait_for_builds(conn, log)
        with publish_lock(conn):
            counts = {
                f"{schema}.{table}": _delete_where_in(conn, schema, table, "user_id", forms)
                for schema, table in _base_tables_with(conn, ("reco",), "user_id")
            }
            conn.commit()
    return counts, waited


# --- outside the warehouse ---------------------------------------------------------------------------
def _erase_reco_cache(s: Settings, user_id: str) -> int:
    """The user's lists in the Redis copy of the generations the API serves (``recomart.recommend.cache``)."""
    import redis

    from recomart.recommend.cache import cache_layout, delete_users

    client = redis.Redis.from_url(s.redis_url, socket_timeout=30)
    try:
        return delete_users(client, cache_layout(s.db_prefix), sorted(user_id_forms(user_id)))
    finally:
        client.close()


def _erase_online_store(s: Settings, user_id: str) -> int:
    from recomart.features import delete_online_entities, feature_store
    from recomart.tools import tool_env

    store = feature_store(s.feature_repo_dir, tool_env(s))
    return delete_online_entities(store, "user", sorted(user_id_forms(user_id)))


def _mark_model_versions(s: Settings, user_id: str, erasure_id: int) -> list[str]:
    from recomart.model.registry import mark_versions_erased, versions_holding_users

    versions = versions_holding_users(s.mlflow_tracking_uri, s.model_name, user_id_forms(user_id))
    mark_versions_erased(s.mlflow_tracking_uri, s.model_name, versions, erasure_id)
    with psycopg.connect(s.warehouse_url) as conn:
        for version in versions:
            conn.execute(
                "insert into ops.erased_model_versions (erasure_id, model_name, model_version) values (%s, %s, %s)"
                " on conflict do nothing",
                (erasure_id, s.model_name, version),
            )
    return versions


def forget_user(
    s: Settings,
    user_id: str,
    *,
    requested_by: str | None = None,
    reason: str | None = None,
    log: Callable[[str], Any] = print,
) -> ErasureSummary:
    """Erase ``user_id`` (as the warehouse writes it, e.g. ``marts.user_features.user_id``) everywhere;
    see the module docstring.  The erasure key is created in ``<state>/secrets`` on first use."""
    if not user_id.strip():
        raise ValueError("an empty user id cannot be forgotten")
    key = bytes.fromhex(persistent_secret(secrets_dir(s.state_dir) / KEY_FILE, new_erasure_key))
    summary = ErasureSummary(
        _open_erasure(s.warehouse_url, user_key(key, user_id), requested_by or getpass.getuser(), reason),
        user_key(key, user_id),
    )
    try:
        summary.counts.update(_erase_warehouse(s.warehouse_url, user_id, key, summary.erasure_id, s.landing_dir))
        reco, summary.waited_for_generations = _erase_recommendations(s.warehouse_url, user_id, log)
        summary.counts.update(reco)
        summary.counts["redis.reco_cache_keys"] = _erase_reco_cache(s, user_id)
        summary.counts["online_store.user_keys"] = _erase_online_store(s, user_id)
        summary.model_versions = _mark_model_versions(s, user_id, summary.erasure_id)
    except BaseException as exc:
        _close_erasure(s.warehouse_url, summary, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    _close_erasure(s.warehouse_url, summary)
    return summary
