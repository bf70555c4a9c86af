"""The path a user takes in the UI: a real api-server, scheduler and dag-processor; trigger `ingest_events`
over the REST API (v2, token auth) and wait until `recommend` has run through the asset chain."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from recomart import processes
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.stack import airflow_login, start_airflow, start_catalog_api, stop_airflow
from recomart.tools import airflow_migrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 170 s: four DAG runs on a real scheduler

COMPONENTS = ("api-server", "scheduler", "dag-processor")
CHAIN = ("ingest_events", "transform", "train", "recommend")


@pytest.fixture(scope="module")
def airflow_api(test_settings: Settings):
    s = test_settings
    generate(s.landing_dir / "generated", users=500, items=150, days=21, seed=11)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        url = start_airflow(s, COMPONENTS)
        user, password = airflow_login(s)
        token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        token.raise_for_status()
        client = httpx.Client(
            base_url=f"{url}/api/v2", timeout=30, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )
        yield s, client
    finally:
        stop_airflow(s, COMPONENTS)
        processes.stop(s, "catalog-api")


def _wait(predicate, what: str, timeout_s: float, log_names: tuple[str, ...], s: Settings):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(3)
    logs = "\n".join(f"--- {n}: {processes.logfile(s, n)}" for n in log_names)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; logs:\n{logs}")


def _runs(client: httpx.Client, dag_id: str) -> list[dict]:
    response = client.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": 50})
    response.raise_for_status()
    return response.json()["dag_runs"]


def test_trigger_over_rest_runs_the_asset_chain_to_recommendations(airflow_api) -> None:
    s, client = airflow_api
    # the dag-processor has parsed the DAGs, and they are unpaused
    dags = _wait(
        lambda: (
            {d["dag_id"]: d for d in client.get("/dags").json().get("dags", [])}
            if client.get("/dags").json().get("total_entries", 0) >= 5
            else None
        ),
        "the dag-processor to parse five DAGs",
        240,
        ("airflow-dag-processor",),
        s,
    )
    assert all(not dags[d]["is_paused"] for d in CHAIN)

    started = datetime.now(UTC)
    response = client.post(
        "/dags/ingest_events/dagRuns",
        json={
            "logical_date": started.isoformat(),
            "conf": {"start_day": min(_landing_days(s)), "end_day": max(_landing_days(s))},
        },
    )
    assert response.status_code in (200, 201), response.text
    run_id = response.json()["dag_run_id"]

    def triggered_run_done():
        run = client.get(f"/dags/ingest_events/dagRuns/{run_id}").json()
        if run["state"] == "failed":
            pytest.fail(f"ingest_events run {run_id} failed")
        return run["state"] == "success"

    _wait(triggered_run_done, "the triggered ingest_events run", 300, ("airflow-scheduler",), s)

    def recommend_after_chain():
        for run in _runs(client, "recommend"):
            if run["run_type"] == "asset_triggered" and run["state"] == "success":
                return run
            if run["run_type"] == "asset_triggered" and run["state"] == "failed":
                pytest.fail(f"asset-triggered recommend run failed: {run['dag_run_id']}")
        return None

    run = _wait(recommend_after_chain, "an asset-triggered recommend run", 900, ("airflow-scheduler",), s)
    assert datetime.fromisoformat(run["start_date"]) > started

    for dag_id in ("transform", "train"):
        kinds = {(r["run_type"], r["state"]) for r in _runs(client, dag_id)}
        assert ("asset_triggered", "success") in kinds, (dag_id, kinds)

    with psycopg.connect(s.warehouse_url) as conn:
        users, rows, with_model = conn.execute(
            "select count(distinct user_id), count(*), count(model_version) from reco.user_recommendations"
        ).fetchone()
        known_users = conn.execute("select count(*) from marts.user_features").fetchone()[0]
    assert users == known_users > 0
    assert rows == 10 * users
    assert with_model == rows  # a champion model served every row


def _landing_days(s: Settings) -> list[str]:
    """The generated shop's days (it ends yesterday: a run up to today would miss today's file)."""
    return [p.stem for p in (s.landing_dir / "generated" / "events").glob("*.csv")]
