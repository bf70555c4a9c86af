"""``./recomart backfill`` against a real api-server, scheduler and dag-processor on generated days.

The command pauses the held DAG (``transform``), creates the backfill over REST, shows progress
(here, redirected: timed lines and a closing count) and returns once Airflow marks it completed;
each day's ledger row is then ``loaded``. The held DAG is left paused (``--keep-held-paused``) so
that the test stops before dbt; the unpause-and-trigger path is the same two REST calls that
test_backfill's step 6 makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import httpx
import psycopg
import pytest

from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.environment import service_env
from recomart.stack import airflow_rest, start_airflow, stop_airflow
from recomart.tools import airflow_migrate

pytestmark = pytest.mark.integration

COMPONENTS = ("api-server", "scheduler", "dag-processor")
DAYS = 3


@pytest.fixture(scope="module")
def stack(test_settings: Settings):
    s = test_settings
    summary = generate(s.landing_dir / "generated", users=40, items=20, days=DAYS + 1, seed=7)
    airflow_migrate(s)
    try:
        start_airflow(s, COMPONENTS, paused_at_creation=True)
        yield s, summary
    finally:
        stop_airflow(s, COMPONENTS)


def _wait_registered(api: httpx.Client, dag_ids: tuple[str, ...]) -> None:
    import time

    deadline = time.monotonic() + 240
    while not all(api.get(f"/dags/{d}").status_code == 200 for d in dag_ids):
        assert time.monotonic() < deadline, "the dag-processor did not register the DAGs"
        time.sleep(2)


def test_backfill_command_loads_every_day_with_progress_and_holds_transform(stack) -> None:
    s, summary = stack
    # before the end date: unpausing ingest_events starts its latest scheduled run (the end date),
    # and a backfill leaves dates that have a run alone
    first, last = summary.end_date - timedelta(days=DAYS), summary.end_date - timedelta(days=1)
    with airflow_rest(s) as api:
        _wait_registered(api, ("ingest_events", "transform"))
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "recomart.cli",
                "backfill",
                "ingest_events",
                "--from",
                str(first),
                "--to",
                str(last),
            ],
            env={**os.environ, **service_env(s)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1 and "ingest_events is paused" in refused.stderr, refused.stderr
        api.patch("/dags/ingest_events", json={"is_paused": False}).raise_for_status()

    args = ["backfill", "ingest_events", "--from", str(first), "--to", str(last), "--keep-held-paused"]
    result = subprocess.run(
        [sys.executable, "-m", "recomart.cli", *args],
        env={**os.environ, **service_env(s)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"backfill ingest_events {first}..{last}: runs: {DAYS}/{DAYS}, 0 failed in " in result.stderr
    assert f"completed: {DAYS} runs ({DAYS} success)" in result.stdout
    assert "still paused: transform" in result.stdout and "left alone" not in result.stdout

    with psycopg.connect(s.warehouse_url) as conn:
        loaded = conn.execute(
            "select count(distinct logical_date) from ops.loaded_files "
            "where status = 'loaded' and logical_date between %s and %s",
            (first, last),
        ).fetchone()[0]
    assert loaded == DAYS
    with airflow_rest(s) as api:
        transform = api.get("/dags/transform").json()
        runs = api.get("/dags/transform/dagRuns").json()["dag_runs"]
    assert transform["is_paused"] and runs == []

    # ./recomart status reads the last run per DAG over the same REST API
    status = subprocess.run(
        [sys.executable, "-m", "recomart.cli", "status"],
        env={**os.environ, **service_env(s)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert status.returncode == 0, status.stderr
    rows = {
        cells[0]: cells[1:]
        for line in status.stdout.splitlines()
        if line.startswith("│") and (cells := [c.strip() for c in line.strip("│").split("│")])
    }
    assert "Last run per DAG (Airflow REST API)" in status.stdout
    assert rows["transform"][:2] == ["paused", "no run yet"]
    assert rows["ingest_events"][0] == "active" and rows["ingest_events"][1].startswith(("scheduled__", "backfill__"))
