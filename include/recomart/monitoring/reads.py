"""The monitoring DAG's reads of the warehouse (``marts``, ``reco``, ``ops``); parameterised SQL only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from psycopg import sql

from recomart.features.names import entity_spec
from recomart.monitoring.health import Popularity

# The key features watched for drift: numeric ones (quantile bins) and categorical ones (categories).
DRIFT_FEATURES: dict[str, dict[str, list[str]]] = {
    "user": {
        "numeric": ["recency_days", "frequency", "monetary", "distinct_items", "days_since_first_seen"],
        "categorical": ["favourite_category", "country", "segment"],
    },
    "item": {
        "numeric": ["pop_7d", "pop_30d", "pop_90d", "distinct_buyers", "revenue", "price"],
        "categorical": ["price_band", "category", "brand"],
    },
}


@dataclass(frozen=True)
class FeatureWindows:
    """One entity's feature rows in the reference and the latest window of its history mart."""

    entity: str
    reference: pd.DataFrame
    current: pd.DataFrame
    reference_start: datetime | None
    current_start: datetime | None
    current_end: datetime | None


def _frame(dsn: str, query: sql.Composable | str, params: tuple = ()) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        columns = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def read_feature_windows(dsn: str, entity: str, window_days: int, reference_days: int) -> FeatureWindows:
    """The as-of rows of ``marts.<entity>_features_history`` in the latest window (the last
    ``window_days`` days up to the newest ``event_timestamp``) and the reference (the
    ``reference_days`` days before it); numeric features as double precision."""
    table = sql.Identifier("marts", f"{entity_spec(entity).feature_view}_history")
    spec = DRIFT_FEATURES[entity]
    columns = [
        sql.SQL("{}::double precision AS {}").format(sql.Identifier(c), sql.Identifier(c)) for c in spec["numeric"]
    ]
    columns += [sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(c)) for c in spec["categorical"]]
    with psycopg.connect(dsn) as conn:
        newest = conn.execute(sql.SQL("SELECT max(event_timestamp) FROM {}").format(table)).fetchone()[0]
    if newest is None:
        empty = pd.DataFrame(columns=[*spec["numeric"], *spec["categorical"]])
        return FeatureWindows(entity, empty, empty, None, None, None)
    current_start = newest - timedelta(days=window_days)
    reference_start = current_start - timedelta(days=reference_days)
    query = sql.SQL(
        "SELECT event_timestamp > %s AS is_current, {columns} FROM {table}"
        " WHERE event_timestamp > %s AND event_timestamp <= %s"
    ).format(columns=sql.SQL(", ").join(columns), table=table)
    rows = _frame(dsn, query, (current_start, reference_start, newest))
    current = rows[rows.pop("is_current").astype(bool)] if len(rows) else rows.drop(columns="is_current")
    reference = rows.drop(current.index)
    return FeatureWindows(entity, reference, current, reference_start, current_start, newest)


def live_generation_rows(dsn: str) -> tuple[int | None, pd.DataFrame]:
    """(the live generation's id, its rows ``user_id, rank, item_id, strategy``), (None, empty) without one."""
    with psycopg.connect(dsn) as conn:
        live = conn.execute("SELECT generation_id FROM reco.generations WHERE is_live").fetchone()
    if live is None:
        return None, pd.DataFrame(columns=["user_id", "rank", "item_id", "strategy"])
    rows = _frame(dsn, "SELECT user_id, rank, item_id, strategy FROM reco.user_recommendations")
    return int(live[0]), rows


def read_popularity(dsn: str) -> Popularity:
    """Distinct users per item and the number of users, from ``marts.user_item_ratings`` (the history
    the generation was ranked against)."""
    per_item = _frame(
        dsn, "SELECT item_id, count(DISTINCT user_id) AS users FROM marts.user_item_ratings GROUP BY item_id"
    )
    with psycopg.connect(dsn) as conn:
        n_users = conn.execute("SELECT count(DISTINCT user_id) FROM marts.user_item_ratings").fetchone()[0]
    return Popularity(per_item.set_index("item_id")["users"].astype("float64"), int(n_users or 0))


def read_catalogue(dsn: str) -> tuple[pd.Index, pd.Series]:
    """(the recommendable item ids, item_id -> category) from ``marts.dim_products``."""
    products = _frame(dsn, "SELECT item_id, category FROM marts.dim_products")
    return pd.Index(products["item_id"]), products.set_index("item_id")["category"]


def read_previous_health(dsn: str, generation_id: int) -> tuple[int | None, dict[str, float]]:
    """(the newest earlier generation measured in ``ops.monitoring_metrics``, its ``reco.*`` values)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "WITH prev AS (SELECT max(subject::bigint) AS g FROM ops.monitoring_metrics"
            " WHERE metric_key LIKE 'reco.%%' AND subject ~ '^[0-9]+$' AND subject::bigint < %s)"
            " SELECT DISTINCT ON (m.metric_key) (SELECT g FROM prev), m.metric_key, m.value"
            " FROM ops.monitoring_metrics m"
            " WHERE m.metric_key LIKE 'reco.%%' AND m.subject = (SELECT g FROM prev)::text"
            " ORDER BY m.metric_key, m.measured_at DESC",
            (generation_id,),
        ).fetchall()
    if not rows:
        return None, {}
    return int(rows[0][0]), {key.removeprefix("reco."): value for _, key, value in rows}


def read_promotions(dsn: str, model_name: str) -> list[dict]:
    """Every gate decision of ``model_name`` in ``ops.model_promotions``, oldest first:
    ``{version, decision, decided_at, metrics}`` (metrics: ``{"model": {...}, "popularity": {...}, ...}``)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT model_version, decision, decided_at, metrics FROM ops.model_promotions"
            " WHERE model_name = %s ORDER BY decided_at",
            (model_name,),
        ).fetchall()
    return [
        {"version": v, "decision": d, "decided_at": at, "metrics": m if isinstance(m, dict) else json.loads(m)}
        for v, d, at, m in rows
    ]


def read_serving_window(dsn: str, minutes: int) -> dict[str, float] | None:
    """The API's last ``minutes`` minutes of ``ops.serving_stats`` over its ``/v1`` routes (not the probes,
    ``/metrics`` or the benchmark's floor): requests, error rate, the worst minute's p95 (ms) and the
    fallback share weighted by the requests of the routes that read lists; None without rows."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT sum(requests), sum(errors)::float8 / nullif(sum(requests), 0), max(p95_ms),"
            " sum(fallback_share * requests) / nullif(sum(requests) FILTER (WHERE fallback_share IS NOT NULL), 0)"
            " FROM ops.serving_stats WHERE minute > now() - make_interval(mins => %s)"
            " AND route LIKE '/v1/%%' AND route <> '/v1/_floor'",
            (minutes,),
        ).fetchone()
    if row is None or not row[0]:
        return None
    return {
        "requests": float(row[0]),
        "error_rate": row[1] or 0.0,
        "p95_ms": row[2] or 0.0,
        "fallback_share": row[3] or 0.0,
    }
