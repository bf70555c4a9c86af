"""``ops.model_promotions``: our own log of every gate decision (MLflow keeps no audit trail of aliases).

The table belongs to the model stage; the warehouse migrations (:mod:`recomart.warehouse`) create it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg

from recomart.warehouse.migrate import migrate_connection


def record_promotion(dsn: str, row: Mapping[str, Any]) -> None:
    """Append one decision (:meth:`recomart.model.promotion.PromotionOutcome.summary`) to
    ``ops.model_promotions`` (migrating the warehouse first, which creates it)."""
    with psycopg.connect(dsn) as conn:
        migrate_connection(conn)
        conn.execute(
            "insert into ops.model_promotions (model_name, model_version, previous_champion, decision, "
            "reason, metrics, run_id, data_digest, blend, inputs_digest, airflow_run_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                row["model_name"],
                row["model_version"],
                row.get("previous_champion"),
                row["decision"],
                row["reason"],
                json.dumps(row["metrics"]),
                row.get("run_id"),
                row.get("data_digest"),
                json.dumps({**(row.get("blend") or {}), "strategy": row.get("strategy", "blend")}),
                row.get("inputs_digest"),
                row.get("airflow_run_id"),
            ),
        )


def previous_champion_of(dsn: str, model_name: str, version: str) -> str | None:
    """The champion that ``version`` replaced when the gate last promoted it (None: it was the first, or
    it was never promoted; also None before any decision was logged)."""
    with psycopg.connect(dsn) as conn:
        if not _table_exists(conn):
            return None
        row = conn.execute(
            "select previous_champion from ops.model_promotions where model_name = %s and model_version = %s"
            " and decision = 'promoted' order by decided_at desc limit 1",
            (model_name, str(version)),
        ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def _table_exists(conn: psycopg.Connection) -> bool:
    return conn.execute("select to_regclass('ops.model_promotions') is not null").fetchone() == (True,)


def last_registered_digest(dsn: str, model_name: str) -> tuple[str, str | None] | None:
    """(version, inputs digest) of the version of ``model_name`` registered last (the digest is None for
    versions logged before digests were kept); None before any decision was logged."""
    with psycopg.connect(dsn) as conn:
        if not _table_exists(conn):
            return None
        # to_jsonb: a log from before the column existed reads as NULL (no DDL on a read)
        row = conn.execute(
            "select model_version, to_jsonb(p) ->> 'inputs_digest' from ops.model_promotions p where model_name = %s"
            " order by decided_at desc limit 1",
            (model_name,),
        ).fetchone()
    return None if row is None else (str(row[0]), row[1])


def decision_of_run(dsn: str, airflow_run_id: str) -> dict[str, Any] | None:
    """``{"version", "decision", "reason", "metrics"}`` of the version the train DAG run ``airflow_run_id``
    registered, or None when that run registered none (its inputs were unchanged) or none is logged."""
    with psycopg.connect(dsn) as conn:
        if not _table_exists(conn):
            return None
        row = conn.execute(
            "select model_version, decision, reason, metrics from ops.model_promotions p"
            " where to_jsonb(p) ->> 'airflow_run_id' = %s order by decided_at desc limit 1",
            (airflow_run_id,),
        ).fetchone()
    if row is None:
        return None
    metrics = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return {"version": str(row[0]), "decision": row[1], "reason": row[2], "metrics": metrics}
