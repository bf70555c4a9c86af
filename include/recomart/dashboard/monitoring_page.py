"""The Monitoring page: drift, recommendation health per generation, serving latency and open alerts.

It reads what the ``monitor`` DAG wrote (``ops.monitoring_metrics``, ``ops.alerts``, through
:mod:`recomart.monitoring`'s metric keys and readers) and what the API's workers wrote
(``ops.serving_stats``); thresholds are the deployment's (:class:`recomart.config.MonitoringSettings`).
"""

from __future__ import annotations

from typing import Any

import psycopg

from recomart.config import Settings
from recomart.dashboard import charts, queries
from recomart.monitoring.evaluate import drift_keys
from recomart.monitoring.reads import DRIFT_FEATURES, read_serving_window
from recomart.monitoring.store import list_alerts

# the metrics issue 17 asks for, by their recomart.monitoring.health names
HEALTH_METRICS = (
    "coverage",
    "exposure_gini",
    "avg_rec_popularity",
    "personalization",
    "novelty",
    "intra_list_diversity",
)
HEALTH_LABELS = {
    "coverage": "coverage",
    "exposure_gini": "Gini of exposure",
    "avg_rec_popularity": "popularity bias (ARP)",
    "personalization": "personalization",
    "novelty": "novelty",
    "intra_list_diversity": "diversity (intra-list)",
}
OPEN_STATES = ("open", "acknowledged")


def open_alerts(s: Settings) -> list[dict[str, Any]]:
    """The open and acknowledged alerts, newest first (:func:`recomart.monitoring.store.list_alerts`);
    empty before migration 0013."""
    try:
        return list_alerts(s.warehouse_url, OPEN_STATES)
    except psycopg.errors.UndefinedTable:
        return []


def serving_window(s: Settings) -> dict[str, float] | None:
    """The monitor's figures of the API's last ``serving_window_minutes`` minutes
    (:func:`recomart.monitoring.reads.read_serving_window`); None without rows or before migration 0013."""
    try:
        return read_serving_window(s.warehouse_url, s.monitoring.serving_window_minutes)
    except psycopg.errors.UndefinedTable:
        return None


def latest_psi(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest PSI row of each (entity, feature), highest PSI first."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # ordered by measured_at
        newest[(row["entity"], row["feature"])] = row
    return sorted(newest.values(), key=lambda row: -(row["value"] or 0.0))


def _thresholds(rows: list[dict[str, Any]], s: Settings) -> dict[str, float | None]:
    """The warn and alert thresholds of the newest run (the deployment's when there is none)."""
    if rows:
        return {"warn": rows[-1]["warn_threshold"], "alert": rows[-1]["alert_threshold"]}
    return {"warn": s.monitoring.psi_warn, "alert": s.monitoring.psi_alert}


def health_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per generation, newest first: ``generation_id`` and each metric's value."""
    table: dict[int, dict[str, Any]] = {}
    for row in rows:
        table.setdefault(row["generation_id"], {"generation_id": row["generation_id"]})[row["metric"]] = row["value"]
    return sorted(table.values(), key=lambda row: -row["generation_id"])


def monitoring(conn: psycopg.Connection, s: Settings) -> dict[str, Any]:
    """The page's context: PSI per feature (charts per entity, newest values), health per generation,
    latency per minute and per route over :data:`queries.SERVING_HOURS` hours, the monitor's serving
    window (:func:`recomart.monitoring.reads.read_serving_window`) and the open alerts."""
    psi = {entity: queries.psi_history(conn, drift_keys(entity)) for entity in DRIFT_FEATURES}
    health = queries.health_per_generation(conn, [f"reco.{name}" for name in HEALTH_METRICS])
    per_minute = queries.latency_per_minute(conn)
    labelled = [{**row, "metric": HEALTH_LABELS[row["metric"]]} for row in health]
    return {
        "psi_latest": latest_psi([row for rows in psi.values() for row in rows]),
        "health": health_table(health),
        "health_metrics": HEALTH_METRICS,
        "health_labels": HEALTH_LABELS,
        "routes": queries.latency_per_route(conn),
        "serving_hours": queries.SERVING_HOURS,
        "window": serving_window(s),
        "window_minutes": s.monitoring.serving_window_minutes,
        "p95_alert_ms": s.monitoring.serving_p95_ms,
        "alerts": open_alerts(s),
        "charts": {
            **{
                f"psi_{entity}": charts.psi_over_time(entity, rows, _thresholds(rows, s))
                for entity, rows in psi.items()
                if rows
            },
            "health": charts.health_per_generation(labelled) if labelled else None,
            "latency": charts.latency_percentiles(per_minute, s.monitoring.serving_p95_ms) if per_minute else None,
        },
    }
