"""The dashboard's reads of the warehouse: one set-based query per panel, on a small connection pool.

Each function takes an open psycopg connection with ``dict_row`` rows and returns plain lists and
dicts for the templates. Lookups of one user or item use the ``reco`` tables' indexes
(``(user_id, rank)``, ``(item_id)``) and ``marts.item_features_history (item_id, event_timestamp)``;
the Overview reads the load ledger, the quarantine, the promotion log and the generations log; the
Monitoring page ``ops.monitoring_metrics`` (indexed on ``(metric_key, subject, measured_at)``) and
``ops.serving_stats`` (keyed by minute first).
Tables that a fresh warehouse does not have yet (the ``reco`` swap tables, dbt's marts) read as empty.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from recomart.data_report.queries import REASON_KIND

Rows = list[dict[str, Any]]
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 5000
HISTORY_LIMIT = 30
MONITORING_DAYS = 90
HEALTH_GENERATIONS = 60
SERVING_HOURS = 24


def dashboard_pool(dsn: str) -> ConnectionPool:
    """A small pool of autocommit connections returning dict rows (opened lazily, closed by the API)."""
    return ConnectionPool(
        dsn,
        min_size=0,
        max_size=4,
        timeout=CONNECT_TIMEOUT_S,
        kwargs={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "autocommit": True,
            "row_factory": dict_row,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
        open=True,
    )


def _rows(conn: psycopg.Connection, query: str | sql.Composable, params: tuple | dict = ()) -> Rows:
    """The rows of ``query``; empty when one of its tables does not exist yet (a fresh warehouse)."""
    try:
        with conn.transaction():
            return list(conn.execute(query, params).fetchall())
    except psycopg.errors.UndefinedTable:
        return []


# --- Overview ----------------------------------------------------------------------------------
def last_loads(conn: psycopg.Connection) -> Rows:
    """The last load attempt of each file feed and of the stream (``ops.loaded_files``)."""
    return _rows(
        conn,
        "select distinct on (feed) feed, status, logical_date, started_at, finished_at, records_loaded,"
        " records_rejected, error from ops.loaded_files order by feed, attempt_id desc",
    )


def last_catalog_load(conn: psycopg.Connection) -> Rows:
    """The catalog feed's last successful load (``ops.catalog_watermark``)."""
    return _rows(
        conn,
        "select feed, last_success_at, last_load_id, fetched, upserted, unchanged, quarantined"
        " from ops.catalog_watermark order by last_success_at desc",
    )


def last_decision(conn: psycopg.Connection, model_name: str) -> Rows:
    """The gate's last decision for ``model_name`` (the train DAG's outcome)."""
    return _rows(
        conn,
        "select decided_at, model_version, decision, reason from ops.model_promotions"
        " where model_name = %s order by decided_at desc limit 1",
        (model_name,),
    )


def generations(conn: psycopg.Connection, limit: int = 10) -> Rows:
    """The last ``limit`` generations (the recommend DAG's outcomes), newest first."""
    return _rows(
        conn,
        "select generation_id, started_at, built_at, model_version, status, is_live, row_count, user_count,"
        " similar_item_count, popular_item_count, strategy_summary from reco.generations"
        " order by generation_id desc limit %s",
        (limit,),
    )


def loads_per_day(conn: psycopg.Connection) -> Rows:
    """Per feed and logical date, the records of the live load (file feeds; not the stream's micro-batches)."""
    return _rows(
        conn,
        "select feed, logical_date, records_loaded, records_rejected from ops.loaded_files"
        " where is_live and feed <> 'stream_events' order by logical_date, feed",
    )


def quarantine_per_day(conn: psycopg.Connection) -> Rows:
    """Quarantined records per logical date and kind of reason (the data report's
    :data:`~recomart.data_report.queries.REASON_KIND`: no ``line N:`` prefix, values as placeholders)."""
    return _rows(
        conn,
        sql.SQL(
            "select _logical_date as day, {kind} as reason, count(*) as records from quarantine.events group by 1, 2"
            " union all select _logical_date, {kind}, count(*) from quarantine.uci_orders group by 1, 2"
            " order by 1, 2"
        ).format(kind=sql.SQL(REASON_KIND)),
    )


def stream_rate(conn: psycopg.Connection) -> Rows:
    """Stream events loaded per minute over the last hour (the worker's ledger rows)."""
    return _rows(
        conn,
        "select date_trunc('minute', finished_at) as minute, sum(records_loaded) as events"
        " from ops.loaded_files where feed = 'stream_events' and finished_at > now() - interval '1 hour'"
        " group by 1 order by 1",
    )


# --- Customer explorer -------------------------------------------------------------------------
def random_user(conn: psycopg.Connection) -> str | None:
    """A user of the live generation, drawn at random (None before any generation)."""
    rows = _rows(conn, "select user_id from reco.user_recommendations where rank = 1 order by random() limit 1")
    return rows[0]["user_id"] if rows else None


def user_history(conn: psycopg.Connection, user_id: str, limit: int = HISTORY_LIMIT) -> Rows:
    """The user's latest interactions: the stream's (not yet in the marts) and the marts', with titles."""
    stream = _rows(
        conn,
        "select e.event_time, e.event_type, e.item_id, p.title, 'stream' as source from raw.stream_events e"
        " left join marts.dim_products p using (item_id) where e.user_id = %s order by e.event_time desc limit %s",
        (user_id, limit),
    )
    nightly = _rows(
        conn,
        "select e.event_time, e.event_type, e.item_id, p.title, 'nightly' as source from marts.user_item_events e"
        " left join marts.dim_products p using (item_id) where e.user_id = %s order by e.event_time desc limit %s",
        (user_id, limit),
    )
    return sorted(stream + nightly, key=lambda row: row["event_time"], reverse=True)[:limit]


def nightly_ranks(conn: psycopg.Connection, user_id: str) -> dict[str, int]:
    """item id -> rank on the user's list of the live generation (before any session re-ranking)."""
    rows = _rows(conn, "select item_id, rank from reco.user_recommendations where user_id = %s", (user_id,))
    return {row["item_id"]: row["rank"] for row in rows}


# --- Product explorer --------------------------------------------------------------------------
def product(conn: psycopg.Connection, item_id: str) -> dict[str, Any] | None:
    """The product's catalogue row (``marts.dim_products``), or None."""
    rows = _rows(
        conn,
        "select item_id, title, description, category, brand, price from marts.dim_products where item_id = %s",
        (item_id,),
    )
    return rows[0] if rows else None


def random_item(conn: psycopg.Connection) -> str | None:
    rows = _rows(conn, "select item_id from reco.similar_items where rank = 1 order by random() limit 1")
    return rows[0]["item_id"] if rows else None


def similar_items(conn: psycopg.Connection, item_id: str, limit: int = 10) -> Rows:
    """The item's "also bought" neighbours in the live generation, with their titles."""
    return _rows(
        conn,
        "select rank, similar_item_id, similar_title, similar_category, similar_price, score"
        " from reco.similar_items_enriched where item_id = %s and kind = 'also_bought' order by rank limit %s",
        (item_id, limit),
    )


def popularity_history(conn: psycopg.Connection, item_id: str) -> Rows:
    """The item's views, add-to-carts and purchases per day (``marts.user_item_events``, whose table
    ``intermediate.int_interactions`` is indexed on ``(item_id, event_time)``)."""
    return _rows(
        conn,
        "select date_trunc('day', event_time) as day, event_type, count(*) as events from marts.user_item_events"
        " where item_id = %s group by 1, 2 order by 1, 2",
        (item_id,),
    )


def recommended_to(conn: psycopg.Connection, item_id: str, limit: int = 15) -> tuple[int, Rows]:
    """(how many users' live lists hold the item, the users who have it highest)."""
    rows = _rows(
        conn,
        "select user_id, rank, score, strategy, count(*) over () as users from reco.user_recommendations"
        " where item_id = %s order by rank, score desc limit %s",
        (item_id, limit),
    )
    return (rows[0]["users"] if rows else 0), rows


# --- Models ------------------------------------------------------------------------------------
def promotions(conn: psycopg.Connection, model_name: str) -> Rows:
    """Every gate decision for ``model_name``, oldest first, with metrics and blend weights."""
    return _rows(
        conn,
        "select decided_at, model_version, previous_champion, decision, reason, metrics, blend"
        " from ops.model_promotions where model_name = %s order by decided_at",
        (model_name,),
    )


# --- Monitoring --------------------------------------------------------------------------------
def psi_history(conn: psycopg.Connection, keys: list[str], days: int = MONITORING_DAYS) -> Rows:
    """PSI per feature per monitor run of the last ``days`` days (metric ``keys``, e.g.
    ``drift.user.psi``): ``entity, feature, run_id, measured_at, value, status`` and the thresholds."""
    return _rows(
        conn,
        "select split_part(metric_key, '.', 2) as entity, subject as feature, run_id, measured_at, value, status,"
        " warn_threshold, alert_threshold from ops.monitoring_metrics"
        " where metric_key = any(%s) and measured_at > now() - make_interval(days => %s)"
        " order by measured_at, metric_key, subject",
        (keys, days),
    )


def health_per_generation(conn: psycopg.Connection, keys: list[str], generations: int = HEALTH_GENERATIONS) -> Rows:
    """The latest measured value of each ``reco.*`` metric in ``keys`` per generation, for the last
    ``generations`` generations measured: ``generation_id, metric`` (without ``reco.``), ``value``."""
    return _rows(
        conn,
        "with latest as (select distinct on (metric_key, subject) subject::bigint as generation_id,"
        " substr(metric_key, 6) as metric, value from ops.monitoring_metrics"
        " where metric_key = any(%s) and subject ~ '^[0-9]+$' order by metric_key, subject, measured_at desc)"
        " select * from latest where generation_id in"
        " (select distinct generation_id from latest order by generation_id desc limit %s)"
        " order by generation_id, metric",
        (keys, generations),
    )


def latency_per_minute(conn: psycopg.Connection, hours: int = SERVING_HOURS) -> Rows:
    """Per minute of the last ``hours`` hours, over the API's ``/v1`` routes (not its floor route): the
    worst p50, p95 and p99 (ms) of any route and worker, and the requests."""
    return _rows(
        conn,
        "select minute, max(p50_ms) as p50, max(p95_ms) as p95, max(p99_ms) as p99, sum(requests) as requests"
        " from ops.serving_stats where minute > now() - make_interval(hours => %s)"
        " and route like '/v1/%%' and route <> '/v1/_floor' group by minute order by minute",
        (hours,),
    )


def latency_per_route(conn: psycopg.Connection, hours: int = SERVING_HOURS) -> Rows:
    """Per ``/v1`` route of the last ``hours`` hours: requests, errors and the worst minute's p50, p95 and
    p99 (ms) of any worker."""
    return _rows(
        conn,
        "select route, sum(requests) as requests, sum(errors) as errors, max(p50_ms) as p50, max(p95_ms) as p95,"
        " max(p99_ms) as p99 from ops.serving_stats where minute > now() - make_interval(hours => %s)"
        " and route like '/v1/%%' and route <> '/v1/_floor' group by route order by sum(requests) desc, route",
        (hours,),
    )
