"""What each page shows: its queries (:mod:`recomart.dashboard.queries`) turned into template context.

Functions take an open connection and plain arguments and return the template's context dict,
chart specs included (:mod:`recomart.dashboard.charts`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import redis

from recomart.config import Settings
from recomart.dashboard import charts, queries
from recomart.stream.events import stream_layout
from recomart.stream.lag import stream_lag
from recomart.transform.dbt import FAILED_STATUSES, last_build

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STREAM_FEED = "stream_events"
REASONS = ("svd", "item_item", "content", "buy_again", "popularity", "session_boost")
HEADLINE_METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "hit_rate_at_10")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def transform_outcome(dbt_target_dir: Path) -> dict[str, Any]:
    """The transform DAG's row: its last ``dbt build`` (dbt's own ``run_results.json``)."""
    build = last_build(dbt_target_dir)
    if build is None:
        return {"dag": "transform", "at": None, "status": "no run", "detail": "no dbt run_results.json yet"}
    failed = sum(n for status, n in build["statuses"].items() if status in FAILED_STATUSES)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(build["statuses"].items()))
    return {
        "dag": "transform",
        "at": build["finished_at"],
        "status": "failed" if failed else "success",
        "detail": f"dbt {build['command']} in {build['elapsed_s']:.0f} s: {counts}",
    }


def dag_outcomes(conn: psycopg.Connection, model_name: str, dbt_target_dir: Path) -> list[dict[str, Any]]:
    """One row per DAG: when it last ran and how it ended, from the warehouse's own logs (and, for
    ``transform``, dbt's ``run_results.json`` under ``dbt_target_dir``)."""
    loads = {row["feed"]: row for row in queries.last_loads(conn)}
    file_loads = [row for feed, row in loads.items() if feed != STREAM_FEED]
    rows: list[dict[str, Any]] = []
    for load in file_loads:
        detail = f"{load['feed']} {load['logical_date']}: {load['records_loaded'] or 0} loaded"
        detail += f", {load['records_rejected'] or 0} quarantined" + (f"; {load['error']}" if load["error"] else "")
        rows.append(
            {
                "dag": "ingest_events",
                "at": load["finished_at"] or load["started_at"],
                "status": load["status"],
                "detail": detail,
            }
        )
    for catalog in queries.last_catalog_load(conn)[:1]:
        detail = f"fetched {catalog['fetched']}, upserted {catalog['upserted']}, quarantined {catalog['quarantined']}"
        rows.append({"dag": "ingest_catalog", "at": catalog["last_success_at"], "status": "success", "detail": detail})
    rows.append(transform_outcome(dbt_target_dir))
    for decision in queries.last_decision(conn, model_name):
        detail = f"version {decision['model_version']}: {decision['reason']}"
        rows.append({"dag": "train", "at": decision["decided_at"], "status": decision["decision"], "detail": detail})
    for generation in queries.generations(conn, limit=1):
        detail = f"generation {generation['generation_id']} (model {generation['model_version'] or '-'})"
        rows.append(
            {
                "dag": "recommend",
                "at": generation["built_at"] or generation["started_at"],
                "status": generation["status"],
                "detail": detail,
            }
        )
    stream = loads.get(STREAM_FEED)
    if stream:
        detail = f"last micro-batch: {stream['records_loaded'] or 0} events"
        rows.append({"dag": "stream worker", "at": stream["finished_at"], "status": stream["status"], "detail": detail})
    return rows


def overview(conn: psycopg.Connection, s: Settings) -> dict[str, Any]:
    gens = queries.generations(conn, limit=10)
    loads, quarantine = queries.loads_per_day(conn), queries.quarantine_per_day(conn)
    rate = queries.stream_rate(conn)
    return {
        "dags": dag_outcomes(conn, s.model_name, s.dbt_target_dir),
        "live": next((g for g in gens if g["is_live"]), None),
        "generations": gens,
        "loaded_total": sum(row["records_loaded"] or 0 for row in loads),
        "quarantined_total": sum(row["records"] for row in quarantine),
        "charts": {
            "loads": charts.loads_per_day(loads),
            "quarantine": charts.quarantine_per_day(quarantine),
            "stream_rate": charts.stream_rate(rate),
        },
        "stream_events_hour": sum(int(row["events"] or 0) for row in rate),
    }


def stream_state(s: Settings) -> dict[str, Any]:
    """The event stream's length, pending entries and lag in seconds, or the error reading them."""
    client = redis.Redis.from_url(s.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        lag = stream_lag(client, stream_layout(s.db_prefix))
    except redis.RedisError as exc:
        return {"error": f"Redis unavailable: {exc}"}
    finally:
        client.close()
    return {"length": lag.length, "pending": lag.pending, "lag_s": lag.behind_s}


def ranks_of(body: dict[str, Any]) -> dict[str, int]:
    """item id -> rank in an API response."""
    return {item["item_id"]: item["rank"] for item in body.get("items", [])}


def customer(conn: psycopg.Connection, user_id: str, random: bool) -> dict[str, Any]:
    if random or not user_id:
        user_id = (queries.random_user(conn) or "") if random else user_id
    if not user_id:
        return {"user_id": "", "history": [], "nightly": {}, "reasons": REASONS}
    return {
        "user_id": user_id,
        "history": queries.user_history(conn, user_id),
        "nightly": queries.nightly_ranks(conn, user_id),
        "reasons": REASONS,
    }


def product(conn: psycopg.Connection, item_id: str, random: bool) -> dict[str, Any]:
    if random:
        item_id = queries.random_item(conn) or ""
    if not item_id:
        return {"item_id": "", "item": None}
    users, top_users = queries.recommended_to(conn, item_id)
    return {
        "item_id": item_id,
        "item": queries.product(conn, item_id),
        "similar": queries.similar_items(conn, item_id),
        "recommended_users": users,
        "top_users": top_users,
        "charts": {"popularity": charts.popularity(queries.popularity_history(conn, item_id))},
    }


def _metric_rows(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for decision in decisions:
        metrics = _json(decision["metrics"]) or {}
        for series in ("model", "popularity", "champion"):
            for metric in HEADLINE_METRICS:
                value = (metrics.get(series) or {}).get(metric)
                if isinstance(value, int | float):
                    rows.append(
                        {"version": str(decision["model_version"]), "metric": metric, "series": series, "value": value}
                    )
    return rows


def _blend_rows(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for decision in decisions:
        blend = _json(decision["blend"]) or {}
        for component, weight in (blend.get("weights") or {}).items():
            rows.append({"version": str(decision["model_version"]), "component": component, "weight": weight})
    return rows


def _at_k_rows(decision: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``<metric>_at_<k>`` figures of one decision as (k, metric, series, value) rows."""
    rows = []
    for series in ("model", "popularity"):
        for name, value in ((decision or {}).get("metrics", {}).get(series) or {}).items():
            metric, _, k = name.rpartition("_at_")
            if metric and k.isdigit() and isinstance(value, int | float):
                rows.append({"k": int(k), "metric": metric, "series": series, "value": value})
    return rows


def models(conn: psycopg.Connection, model_name: str) -> dict[str, Any]:
    decisions = queries.promotions(conn, model_name)
    for decision in decisions:
        decision["metrics"], decision["blend"] = _json(decision["metrics"]) or {}, _json(decision["blend"]) or {}
    champion = next((d for d in reversed(decisions) if d["decision"] == "promoted"), None)
    at_k = _at_k_rows(champion)
    return {
        "decisions": list(reversed(decisions)),
        "champion": champion,
        "headline": HEADLINE_METRICS,
        "charts": {
            "metrics": charts.metrics_over_versions(_metric_rows(decisions)),
            "blend": charts.blend_weights(_blend_rows(decisions)),
            "at_k": charts.at_k_curves(at_k) if at_k else None,
        },
    }


def annotate(live: dict[str, Any], nightly: dict[str, int], before: dict[str, int] | None = None) -> None:
    """Add to each item of the API's response ``bars`` (reason, value, width in % of the largest
    absolute value of that reason on the list), ``nightly_rank`` and ``moved`` (the session changed its
    place: a session boost, or a rank other than the nightly one or than ``before``'s)."""
    items = live.get("items", [])
    largest = {
        name: max((abs(item["reasons"].get(name, 0.0)) for item in items), default=0.0) or 1.0 for name in REASONS
    }
    for item in items:
        item["bars"] = [
            (name, item["reasons"][name], round(100 * abs(item["reasons"][name]) / largest[name]))
            for name in REASONS
            if name in item["reasons"]
        ]
        item["nightly_rank"] = nightly.get(item["item_id"])
        reference = (
            (before or {}).get(item["item_id"], item["nightly_rank"]) if before is not None else item["nightly_rank"]
        )
        item["moved"] = bool(item["reasons"].get("session_boost")) or reference != item["rank"]
        item["previous_rank"] = reference


def suggestion(live: dict[str, Any]) -> str | None:
    """An item to try in the "what if" box: the last of the list (viewing it boosts its neighbours)."""
    items = live.get("items") or []
    return items[-1]["item_id"] if items else None
