"""``ops.monitoring_metrics`` (one row per metric per run) and ``ops.alerts`` (open -> acknowledged ->
resolved), written set-based: a run's checks go in with one ``executemany``, then one upsert opens or
refreshes the alerts of its breaches and one update resolves those whose metric is back within its
threshold. Re-running the same run (same ``run_id``) replaces its rows and opens nothing twice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from recomart.monitoring.checks import Check

ALERT_COLUMNS = (
    "alert_id, metric_key, subject, what, value, threshold, run_id, state, opened_at, last_value, last_run_id,"
    " breaches, acknowledged_at, acknowledged_by, resolved_at, resolved_by_run"
)


@dataclass
class RunOutcome:
    """What one run did to ``ops.alerts``: alerts it ``opened``, those still ``breached`` (opened before,
    breached again) and those it ``resolved``; each a dict of :data:`ALERT_COLUMNS`."""

    opened: list[dict[str, Any]] = field(default_factory=list)
    breached: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)


_UPSERT_ALERTS = f"""
INSERT INTO ops.alerts (metric_key, subject, what, value, threshold, run_id, last_value, last_run_id)
SELECT metric_key, alert_scope, what, value, alert_threshold, run_id, value, run_id
FROM ops.monitoring_metrics
WHERE run_id = %(run_id)s AND metric_key = ANY(%(keys)s) AND status = 'alert'
ON CONFLICT (metric_key, subject) WHERE state <> 'resolved' DO UPDATE SET
    last_value = excluded.last_value,
    breaches = ops.alerts.breaches + (ops.alerts.last_run_id <> excluded.last_run_id)::int,
    last_run_id = excluded.last_run_id,
    last_seen_at = now()
RETURNING {ALERT_COLUMNS}, (xmax = 0) AS is_new
"""

_RESOLVE_ALERTS = f"""
UPDATE ops.alerts a SET state = 'resolved', resolved_at = now(), resolved_by_run = m.run_id, last_value = m.value
FROM ops.monitoring_metrics m
WHERE m.run_id = %(run_id)s AND m.metric_key = ANY(%(keys)s) AND m.status IN ('ok', 'warn')
  AND a.metric_key = m.metric_key AND a.subject = m.alert_scope AND a.state <> 'resolved'
RETURNING {", ".join("a." + c.strip() for c in ALERT_COLUMNS.split(","))}
"""


def record_checks(dsn: str, run_id: str, checks: Sequence[Check], keys: Sequence[str]) -> RunOutcome:
    """Replace run ``run_id``'s rows of metrics ``keys`` with ``checks``, then open, refresh or resolve
    the alerts of those metrics, in one transaction. ``keys`` names every metric the caller measures,
    so a metric it could not measure this time (no rows) neither opens nor resolves anything."""
    keys = sorted(set(keys) | {c.metric_key for c in checks})
    params = {"run_id": run_id, "keys": keys}
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "DELETE FROM ops.monitoring_metrics WHERE run_id = %(run_id)s AND metric_key = ANY(%(keys)s)", params
        )
        cur.executemany(
            "INSERT INTO ops.monitoring_metrics (run_id, metric_key, subject, value, what, alert_scope, status,"
            " warn_threshold, alert_threshold, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    run_id,
                    c.metric_key,
                    c.subject,
                    c.value,
                    c.what,
                    c.scope,
                    c.status,
                    c.warn_threshold,
                    c.alert_threshold,
                    json.dumps(c.details, default=str),
                )
                for c in checks
            ],
        )
        cur.execute(_UPSERT_ALERTS, params)
        upserted = cur.fetchall()
        cur.execute(_RESOLVE_ALERTS, params)
        resolved = cur.fetchall()
    opened = [_without(row, "is_new") for row in upserted if row["is_new"]]
    breached = [_without(row, "is_new") for row in upserted if not row["is_new"]]
    return RunOutcome(opened, breached, resolved)


def _without(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def list_alerts(dsn: str, states: Sequence[str] = ("open", "acknowledged")) -> list[dict[str, Any]]:
    """The alerts in ``states``, newest first."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM ops.alerts WHERE state = ANY(%s) ORDER BY opened_at DESC, alert_id DESC",
            (list(states),),
        )
        return cur.fetchall()


def run_changes(dsn: str, run_id: str) -> RunOutcome:
    """The alerts run ``run_id`` opened (and that are not resolved since) and those it resolved."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM ops.alerts WHERE (run_id = %(r)s AND state <> 'resolved')"
            " OR resolved_by_run = %(r)s ORDER BY alert_id",
            {"r": run_id},
        )
        rows = cur.fetchall()
    return RunOutcome(
        opened=[a for a in rows if a["state"] != "resolved"],
        resolved=[a for a in rows if a["resolved_by_run"] == run_id],
    )


class AlertNotFound(LookupError):
    """No alert with that id, or it is already resolved."""


def acknowledge(dsn: str, alert_id: int, by: str) -> dict[str, Any]:
    """Mark open alert ``alert_id`` acknowledged by ``by`` (an acknowledged one stays as it was); raises
    :class:`AlertNotFound` for an unknown or resolved alert."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "UPDATE ops.alerts SET state = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, now()),"
            " acknowledged_by = coalesce(acknowledged_by, %s) WHERE alert_id = %s AND state <> 'resolved'"
            f" RETURNING {ALERT_COLUMNS}",
            (by, alert_id),
        )
        row = cur.fetchone()
    if row is None:
        raise AlertNotFound(f"alert {alert_id}: no such alert, or it is resolved (./recomart alerts list --all)")
    return row


def summary_line(alert: dict[str, Any]) -> str:
    """One readable line: id, state, what, the measured value against the threshold, the run."""
    value = alert["last_value"] if alert.get("last_value") is not None else alert["value"]
    shown = "n/a" if value is None else f"{value:.4g}"
    limit = "n/a" if alert["threshold"] is None else f"{alert['threshold']:.4g}"
    return (
        f"#{alert['alert_id']} [{alert['state']}] {alert['metric_key']}"
        f"{' ' + alert['subject'] if alert['subject'] else ''}: {alert['what']} (value {shown}, threshold {limit},"
        f" run {alert['last_run_id']}, breached {alert['breaches']}x)"
    )
