"""`recomart up` after the demo leaves the system idle (issue 13, point 5).

The demo's chain runs the five DAGs itself; then a real api-server, scheduler and dag-processor
start, as `up` starts them.  Asked over the REST API (not the metadata database): no asset-triggered
run starts (the demo left no asset events queued), nothing stays queued, and the runs the timetables
start for their latest interval (ingest_catalog, ingest_events, the nightly recommend) find nothing
new and end as no-ops, without a new model version or recommendation generation.
"""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from recomart import processes
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.stack import airflow_login, start_airflow, start_catalog_api, stop_airflow
from recomart.tools import airflow_migrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = ("api-server", "scheduler", "dag-processor")
TIMETABLE_DAGS = ("ingest_catalog", "ingest_events", "recommend")
DAGS = ("ingest_catalog", "ingest_events", "transform", "train", "recommend")
#: how long to watch for runs after the timetables' runs ended (a scheduler loop is a few seconds)
QUIET_S = 45


@pytest.fixture(scope="module")
def after_demo_then_up(test_settings: Settings):
    s = test_settings
    generate(s.landing_dir / "generated", users=300, items=100, days=14, seed=5)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        run_chain(s)
        counts = _counts(s)
        url = start_airflow(s, COMPONENTS)
        user, password = airflow_login(s)
        token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        with httpx.Client(base_url=f"{url}/api/v2", timeout=30, headers=headers) as client:
            yield s, client, counts
    finally:
        stop_airflow(s, COMPONENTS)
        processes.stop(s, "catalog-api")


def _counts(s: Settings) -> tuple[int, int]:
    with psycopg.connect(s.warehouse_url) as conn:
        promotions = conn.execute("select count(*) from ops.model_promotions").fetchone()[0]
        generations = conn.execute("select count(*) from reco.generations").fetchone()[0]
    return promotions, generations


def _runs(client: httpx.Client, dag_id: str) -> list[dict]:
    response = client.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100})
    response.raise_for_status()
    return response.json()["dag_runs"]


def _not_by_the_demo(client: httpx.Client) -> dict[str, list[dict]]:
    """Every run the demo did not start (its runs are manual runs of `dag.test`)."""
    return {dag_id: [r for r in _runs(client, dag_id) if r["run_type"] != "manual"] for dag_id in DAGS}


def _wait_for(predicate, what: str, timeout_s: float, s: Settings):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(3)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; see {processes.logfile(s, 'airflow-scheduler')}")


def test_up_after_the_demo_starts_nothing_downstream_and_leaves_nothing_queued(after_demo_then_up) -> None:
    s, client, (promotions, generations) = after_demo_then_up

    def timetable_runs_finished():
        runs = _not_by_the_demo(client)
        done = [r for d in TIMETABLE_DAGS for r in runs[d] if r["state"] in ("success", "failed")]
        return runs if len(done) == len(TIMETABLE_DAGS) else None

    _wait_for(timetable_runs_finished, "each timetable DAG's run of its latest interval", 420, s)
    time.sleep(QUIET_S)
    runs = _not_by_the_demo(client)
    summary = {d: [(r["run_type"], r["state"]) for r in rs] for d, rs in runs.items()}
    # only the timetables' own run of their latest interval, each a success, and no asset-triggered run
    assert {d: len(rs) for d, rs in runs.items()} == {
        "ingest_catalog": 1,
        "ingest_events": 1,
        "transform": 0,
        "train": 0,
        "recommend": 1,
    }, summary
    assert all(r["run_type"] == "scheduled" and r["state"] == "success" for rs in runs.values() for r in rs), summary
    # ... which found nothing new: their outlet tasks ended skipped, so they emitted no asset event
    for dag_id, task_id in (
        ("ingest_catalog", "validate_products"),
        ("ingest_events", "validate_raw"),
        ("recommend", "publish"),
    ):
        run_id = runs[dag_id][0]["dag_run_id"]
        ti = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").json()
        assert ti["state"] == "skipped", (dag_id, task_id, ti["state"])
    # nothing left in the asset queues, no new model version or generation
    for dag_id in ("transform", "train", "recommend"):
        queued = client.get(f"/dags/{dag_id}/assets/queuedEvents")
        assert queued.status_code == 404 or queued.json()["total_entries"] == 0, (dag_id, queued.text)
    assert _counts(s) == (promotions, generations)
