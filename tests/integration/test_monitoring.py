"""The monitor's checks on a real Postgres, with planted problems: a shifted feature distribution
raises the PSI alert, a coverage collapse raises its alert, a healthy run raises none; alerts resolve
themselves when a later run is back within the threshold, `./recomart alerts ack ID` acknowledges
one, and the run's changes reach a webhook (a real HTTP server on a local socket).

The marts and the live generation are made by hand in this module's warehouse (dbt, the ranking and
the publish path are tested elsewhere); the task bodies are the ones the monitor DAG runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import psycopg
import pytest
from test_reco_writer import copy_frame

from recomart.config import Settings
from recomart.environment import service_env
from recomart.monitoring.store import list_alerts
from recomart.tasks import monitor

pytestmark = pytest.mark.integration

N_USERS, N_ITEMS = 400, 100
DAY = pd.Timestamp("2026-11-30", tz="UTC")

_DDL = """
CREATE SCHEMA IF NOT EXISTS marts;
CREATE TABLE marts.dim_products (item_id text, category text);
CREATE TABLE marts.user_item_ratings (user_id text, item_id text);
CREATE TABLE marts.user_features_history (
    user_id text, event_timestamp timestamptz, recency_days integer, frequency integer, monetary numeric,
    distinct_items integer, favourite_category text, country text, segment text, days_since_first_seen integer);
CREATE TABLE marts.item_features_history (
    item_id text, event_timestamp timestamptz, pop_7d integer, pop_30d integer, pop_90d integer,
    distinct_buyers integer, revenue numeric, price numeric, price_band text, category text, brand text);
CREATE TABLE reco.user_recommendations (user_id text, rank integer, item_id text, strategy text);
"""


def _user_snapshot(rng: np.random.Generator, day: pd.Timestamp, monetary_scale: float = 1.0) -> pd.DataFrame:
    n = N_USERS
    return pd.DataFrame(
        {
            "user_id": [f"u{u:04d}" for u in range(n)],
            "event_timestamp": day,
            "recency_days": rng.integers(0, 60, n),
            "frequency": rng.poisson(4, n),
            "monetary": np.round(rng.lognormal(3, 1, n) * monetary_scale, 2),
            "distinct_items": rng.poisson(3, n),
            "favourite_category": rng.choice(["A", "B", "C", "D"], n),
            "country": rng.choice(["UK", "FR", "DE"], n, p=[0.6, 0.3, 0.1]),
            "segment": rng.choice(["new", "regular", "vip"], n),
            "days_since_first_seen": rng.integers(0, 365, n),
        }
    )


def _item_snapshot(rng: np.random.Generator, day: pd.Timestamp) -> pd.DataFrame:
    n = N_ITEMS
    pop = rng.poisson(5, n)
    return pd.DataFrame(
        {
            "item_id": [f"i{i:03d}" for i in range(n)],
            "event_timestamp": day,
            "pop_7d": pop,
            "pop_30d": pop * 4 + rng.poisson(2, n),
            "pop_90d": pop * 12 + rng.poisson(5, n),
            "distinct_buyers": rng.poisson(10, n),
            "revenue": np.round(rng.gamma(2, 50, n), 2),
            "price": np.round(rng.uniform(5, 100, n), 2),
            "price_band": rng.choice(["low", "mid", "high"], n),
            "category": [("A", "B", "C", "D")[i % 4] for i in range(n)],
            "brand": [f"b{i % 7}" for i in range(n)],
        }
    )


def _set_latest_user_day(dsn: str, monetary_scale: float) -> None:
    """Replace the newest as-of day of the user history (the latest window) with a fresh draw."""
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM marts.user_features_history WHERE event_timestamp = %s", (DAY,))
        copy_frame(conn, "marts.user_features_history", _user_snapshot(np.random.default_rng(99), DAY, monetary_scale))


def _publish(dsn: str, lists: pd.DataFrame) -> int:
    """Make ``lists`` the live generation (a new reco.generations row, the table's rows replaced)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE reco.generations SET is_live = false, status = 'superseded' WHERE is_live")
        generation = conn.execute(
            "INSERT INTO reco.generations (status, is_live, built_at) VALUES ('live', true, now())"
            " RETURNING generation_id"
        ).fetchone()[0]
        conn.execute("TRUNCATE reco.user_recommendations")
        copy_frame(conn, "reco.user_recommendations", lists)
    return generation


def _personal_lists(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = [f"i{i:03d}" for i in range(N_ITEMS)]
    rows = [
        (f"u{u:04d}", rank, item, "hybrid")
        for u in range(N_USERS)
        for rank, item in enumerate(rng.choice(items, 10, replace=False), 1)
    ]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "strategy"])


def _collapsed_lists() -> pd.DataFrame:
    top = [f"i{i:03d}" for i in range(10)]
    rows = [(f"u{u:04d}", rank, item, "hybrid") for u in range(N_USERS) for rank, item in enumerate(top, 1)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "strategy"])


@pytest.fixture(scope="module")
def shop(test_settings: Settings) -> Settings:
    """Hand-made marts with 8 as-of days of history (7 reference days + the latest), a promoted model,
    a minute of healthy API traffic, and a healthy live generation."""
    dsn = test_settings.warehouse_url
    rng = np.random.default_rng(5)
    with psycopg.connect(dsn) as conn:
        conn.execute(_DDL)
        copy_frame(conn, "marts.dim_products", _item_snapshot(rng, DAY)[["item_id", "category"]])
        pairs = pd.DataFrame(
            {
                "user_id": [f"u{u:04d}" for u in rng.integers(0, N_USERS, 3000)],
                "item_id": [f"i{i:03d}" for i in rng.zipf(1.5, 3000) % N_ITEMS],
            }
        ).drop_duplicates()
        copy_frame(conn, "marts.user_item_ratings", pairs)
        for back in range(1, 8):
            day = DAY - pd.Timedelta(days=back)
            copy_frame(conn, "marts.user_features_history", _user_snapshot(rng, day))
            copy_frame(conn, "marts.item_features_history", _item_snapshot(rng, day))
        copy_frame(conn, "marts.item_features_history", _item_snapshot(rng, DAY))
        conn.execute(
            "INSERT INTO ops.model_promotions (model_name, model_version, decision, reason, metrics)"
            " VALUES (%s, '1', 'promoted', 'beats popularity', %s)",
            (test_settings.model_name, json.dumps({"model": {"ndcg_at_10": 0.2}, "popularity": {"ndcg_at_10": 0.1}})),
        )
        conn.execute(
            "INSERT INTO ops.serving_stats (minute, route, worker, requests, errors, p50_ms, p95_ms, p99_ms,"
            " fallback_share) VALUES (date_trunc('minute', now()), '/v1/users/{user_id}/recommendations', 'w1',"
            " 600, 0, 2.0, 6.5, 9.0, 0.0)"
        )
    _set_latest_user_day(dsn, 1.0)
    _publish(dsn, _personal_lists(1))
    return test_settings


def _run_all(s: Settings, run_id: str) -> dict[str, dict]:
    dsn = s.warehouse_url
    return {
        "drift": monitor.check_data_drift(s, dsn, run_id),
        "reco": monitor.check_recommendation_health(s, dsn, run_id),
        "model": monitor.check_model_health(s, dsn, run_id),
        "serving": monitor.check_serving_health(s, dsn, run_id),
    }


def _open(dsn: str) -> dict[tuple[str, str], dict]:
    return {(a["metric_key"], a["subject"]): a for a in list_alerts(dsn, ("open", "acknowledged"))}


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        _Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def webhook():
    """A real HTTP server on a loopback port collecting the JSON bodies POSTed to it."""
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.bodies
    server.shutdown()
    server.server_close()


def test_a_healthy_run_measures_everything_and_raises_no_alert(shop: Settings, webhook) -> None:
    url, bodies = webhook
    s = dataclasses.replace(shop, alert_webhook=url)
    summaries = _run_all(s, "run-1-healthy")
    assert summaries["drift"]["metrics"] == 8 + 9  # every key user and item feature
    assert summaries["drift"]["statuses"].get("alert", 0) == 0
    assert summaries["reco"]["health"]["personalization"] > 0.85
    assert summaries["model"]["statuses"] == {"info": 1, "ok": 1}
    assert summaries["serving"]["statuses"] == {"info": 1, "ok": 3}
    assert _open(s.warehouse_url) == {}
    assert monitor.report_alerts(s, s.warehouse_url, "run-1-healthy")["open"] == 0
    assert bodies == []  # nothing opened or resolved: nothing posted


def test_planted_drift_raises_the_psi_alert_and_posts_it(shop: Settings, webhook) -> None:
    url, bodies = webhook
    s = dataclasses.replace(shop, alert_webhook=url)
    _set_latest_user_day(s.warehouse_url, monetary_scale=3.0)  # every user's spend tripled
    summary = monitor.check_data_drift(s, s.warehouse_url, "run-2-drift")
    alerts = _open(s.warehouse_url)
    assert set(alerts) == {("drift.user.psi", "monetary")}, alerts
    alert = alerts[("drift.user.psi", "monetary")]
    assert alert["state"] == "open" and alert["run_id"] == "run-2-drift"
    assert alert["value"] >= s.monitoring.psi_alert == alert["threshold"]
    assert "monetary" in alert["what"] and summary["opened"] == [alert["alert_id"]]
    with pytest.raises(monitor.OpenAlerts, match=r"drift.user.psi monetary: .*PSI"):
        monitor.report_alerts(s, s.warehouse_url, "run-2-drift")
    assert [b["run_id"] for b in bodies] == ["run-2-drift"]
    assert [a["alert_id"] for a in bodies[0]["opened"]] == [alert["alert_id"]]
    assert "opened: #" in bodies[0]["text"]
    bodies.clear()


def test_a_re_run_of_the_same_run_changes_nothing(shop: Settings) -> None:
    dsn = shop.warehouse_url
    before = _open(dsn)
    monitor.check_data_drift(shop, dsn, "run-2-drift")
    after = _open(dsn)
    assert after.keys() == before.keys()
    assert [a["breaches"] for a in after.values()] == [a["breaches"] for a in before.values()] == [1]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select count(*) from ops.monitoring_metrics where run_id = 'run-2-drift'").fetchone()[0]
    assert rows == 17


def test_ack_through_the_cli_then_the_alert_resolves_itself(shop: Settings, webhook) -> None:
    url, bodies = webhook
    s = dataclasses.replace(shop, alert_webhook=url)
    dsn = s.warehouse_url
    alert_id = _open(dsn)[("drift.user.psi", "monetary")]["alert_id"]
    env = {**os.environ, **service_env(s)}
    done = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "alerts", "ack", str(alert_id)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"#{alert_id} [acknowledged]" in done.stdout
    assert monitor.report_alerts(s, dsn, "run-3-acked")["open"] == 0  # acknowledged: the DAG no longer fails
    missing = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "alerts", "ack", "999999"], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no such alert" in missing.stderr

    _set_latest_user_day(dsn, monetary_scale=1.0)  # back to the reference distribution
    summary = monitor.check_data_drift(s, dsn, "run-4-recovered")
    assert summary["resolved"] == [alert_id]
    (resolved,) = [a for a in list_alerts(dsn, ("resolved",)) if a["alert_id"] == alert_id]
    assert resolved["resolved_by_run"] == "run-4-recovered" and resolved["acknowledged_by"]
    monitor.report_alerts(s, dsn, "run-4-recovered")
    assert [a["alert_id"] for a in bodies[-1]["resolved"]] == [alert_id]
    listed = subprocess.run([sys.executable, "-m", "recomart.cli", "alerts"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "no open or acknowledged alerts" in listed.stdout


def test_planted_coverage_collapse_raises_its_alert_and_a_healthy_generation_resolves_it(shop: Settings) -> None:
    dsn = shop.warehouse_url
    collapsed = _publish(dsn, _collapsed_lists())  # every user gets the same ten items
    summary = monitor.check_recommendation_health(shop, dsn, "run-5-collapse")
    alerts = _open(dsn)
    assert ("reco.coverage_ratio", "") in alerts, alerts
    coverage = alerts[("reco.coverage_ratio", "")]
    assert coverage["value"] < 1 - shop.monitoring.coverage_drop and str(collapsed) in coverage["what"]
    assert ("reco.personalization_floor", "") in alerts  # identical lists are not personal either
    assert summary["health"]["coverage"] == pytest.approx(10 / N_ITEMS)

    _publish(dsn, _personal_lists(2))
    summary = monitor.check_recommendation_health(shop, dsn, "run-6-healthy-again")
    assert sorted(summary["resolved"]) == sorted(a["alert_id"] for a in alerts.values())
    assert _open(dsn) == {}


def test_a_webhook_that_cannot_be_reached_is_reported_not_raised(shop: Settings, free_port) -> None:
    from recomart.monitoring.store import RunOutcome
    from recomart.monitoring.webhook import post_alerts

    alert = {
        "alert_id": 1, "state": "open", "metric_key": "reco.coverage_ratio", "subject": "", "what": "coverage fell",
        "value": 0.1, "last_value": 0.1, "threshold": 0.5, "last_run_id": "r", "breaches": 1,
    }  # fmt: skip
    problem = post_alerts(f"http://127.0.0.1:{free_port()}/hook", "r", RunOutcome(opened=[alert]))
    assert problem is not None and "alert webhook POST failed" in problem
    assert post_alerts(f"http://127.0.0.1:{free_port()}/hook", "r", RunOutcome()) is None  # nothing to send


def test_slow_api_and_a_champion_below_popularity_raise_their_alerts(shop: Settings) -> None:
    dsn = shop.warehouse_url
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO ops.serving_stats (minute, route, worker, requests, errors, p50_ms, p95_ms, p99_ms,"
            " fallback_share) VALUES (date_trunc('minute', now()), '/v1/items/{item_id}/similar', 'w2', 100, 20,"
            " 80.0, 450.0, 900.0, 0.0), (date_trunc('minute', now()), '/readyz', 'w2', 10, 0, 900, 900, 900, NULL)"
        )
        conn.execute(
            "INSERT INTO ops.model_promotions (model_name, model_version, decision, reason, metrics)"
            " VALUES (%s, '2', 'promoted', 'forced', %s)",
            (shop.model_name, json.dumps({"model": {"ndcg_at_10": 0.05}, "popularity": {"ndcg_at_10": 0.1}})),
        )
    serving = monitor.check_serving_health(shop, dsn, "run-7-slow")
    model = monitor.check_model_health(shop, dsn, "run-7-slow")
    alerts = _open(dsn)
    assert set(alerts) == {("serving.p95_ms", ""), ("serving.error_rate", ""), ("model.lift_over_popularity", "")}
    assert alerts[("serving.p95_ms", "")]["value"] == 450.0  # the probe's 900 ms is not an API route
    assert alerts[("serving.error_rate", "")]["value"] == pytest.approx(20 / 700)
    assert alerts[("model.lift_over_popularity", "")]["value"] == pytest.approx(0.5)
    assert len(serving["opened"]) == 2 and len(model["opened"]) == 1


def test_the_monitor_dag_fails_on_open_alerts_and_its_callback_logs_them(shop: Settings) -> None:
    """The real DAG (Airflow ``dag.test()``) on the planted drift: the checks run, ``report_alerts``
    fails without retries, and the failure callback's summary names each open alert."""
    from recomart import processes
    from recomart.chain_progress import run_dags_with_progress
    from recomart.tools import ToolError, airflow_migrate

    _set_latest_user_day(shop.warehouse_url, monetary_scale=3.0)
    airflow_migrate(shop)
    with pytest.raises(ToolError, match="the DAG chain stopped"):
        run_dags_with_progress(shop, [{"dag_id": "monitor", "conf": None}])
    output = processes.logfile(shop, "demo-chain").read_text()
    summary = [line for line in output.splitlines() if "RecoMart task FAILED: dag=monitor task=report_alerts" in line]
    assert summary, output[-3000:]
    assert "monitoring alerts open" in summary[0]
    assert "drift.user.psi monetary" in output  # the alert's own line follows in the same message
    assert "try=1" in summary[0]  # no retries: bad news does not improve by waiting
    open_now = _open(shop.warehouse_url)
    assert ("drift.user.psi", "monetary") in open_now
