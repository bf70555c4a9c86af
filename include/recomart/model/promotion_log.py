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
            "reason, metrics, run_id, data_digest, blend) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                row["model_name"],
                row["model_version"],
                row.get("previous_champion"),
                row["decision"],
                row["reason"],
                json.dumps(row["metrics"]),
                row.get("run_id"),
                row.get("data_digest"),
                None if row.get("blend") is None else json.dumps(row["blend"]),
            ),
        )


def previous_champion_of(dsn: str, model_name: str, version: str) -> str | None:
    """The champion that ``version`` replaced when the gate last promoted it (None: it was the first, or
    it was never promoted; also None before any decision was logged)."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('ops.model_promotions') is not null").fetchone() != (True,):
            return None
        row = conn.execute(
            "select previous_champion from ops.model_promotions where model_name = %s and model_version = %s"
            " and decision = 'promoted' order by decided_at desc limit 1",
            (model_name, str(version)),
        ).fetchone()
    return None if row is None or row[0] is None else str(row[0])
