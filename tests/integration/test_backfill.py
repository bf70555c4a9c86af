"""The UCI backfill of docs/backfill.md, run for real: a real api-server, scheduler and dag-processor,
`transform` paused, `airflow backfill create` for `ingest_events`, the re-run with
`--reprocess-behavior completed`, then `transform` unpaused and triggered once.

Both variants are `slow` (deselected in CI): ten UCI days (about 150 s) and the full range (374 days,
541,909 records). `test_backfill_cli.py` runs a backfill on a real scheduler in the default suite.
Needs ../shared/data.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import psycopg
import pytest

from recomart import processes, services
from recomart.catalog_api.app import serve_in_thread
from recomart.checksums import table_checksums
from recomart.config import Settings
from recomart.datasets.landing import catalog_file, prepare_dataset
from recomart.datasets.uci import UCI_ROWS
from recomart.stack import airflow_login, start_airflow, stop_airflow
from recomart.tasks.ingest_catalog import ingest_catalog_snapshot
from recomart.tools import airflow_migrate, run_tool

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]

COMPONENTS = ("api-server", "scheduler", "dag-processor")
INGEST_TASKS = ("load_landing_files", "validate_raw")
FEED = "uci_orders"


class Window(NamedTuple):
    first: date
    last: date
    whole_data_set: bool = False

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


WINDOWS = [
    # 10 logical dates, 8 files: Saturdays 2010-12-04 and 2010-12-11 have none
    # 150 s: 20 DAG runs on a real scheduler (test_backfill_cli.py runs a backfill on one in the default suite)
    pytest.param(Window(date(2010, 12, 3), date(2010, 12, 12)), id="ten_days", marks=pytest.mark.slow),
    pytest.param(
        Window(date(2010, 12, 1), date(2011, 12, 9), whole_data_set=True), id="full_range", marks=pytest.mark.slow
    ),
]


# --- helpers -----------------------------------------------------------------------------------
def csv_records(path: Path) -> int:
    """Records of a file counted independently of the loader: csv-module rows after the header."""
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def airflow(s: Settings, *args: str) -> str:
    """The `airflow` CLI with the deployment's environment, as `eval "$(./recomart env)"` gives it."""
    return run_tool(["airflow", *args], s)


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float, s: Settings) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(2)
    logs = ", ".join(str(processes.logfile(s, f"airflow-{c}")) for c in COMPONENTS)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; logs: {logs}")


def collect(client: httpx.Client, path: str, key: str, **params: Any) -> list[dict]:
    """Every item of a paginated REST v2 collection."""
    items: list[dict] = []
    while True:
        response = client.get(path, params={**params, "limit": 100, "offset": len(items)})
        response.raise_for_status()
        body = response.json()
        items += body[key]
        if not body[key] or len(items) >= body["total_entries"]:
            return items


def dag_runs(client: httpx.Client, dag_id: str, **params: Any) -> list[dict]:
    return collect(client, f"/dags/{dag_id}/dagRuns", "dag_runs", **params)


def set_paused(client: httpx.Client, dag_id: str, paused: bool) -> None:
    """`airflow dags pause|unpause <dag_id>` over REST v2."""
    client.patch(f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()


def run_backfill(s: Settings, client: httpx.Client, window: Window, *flags: str) -> list[dict]:
    """docs/backfill.md step 4 (step 5 with flags): create the backfill, wait until the scheduler marks it
    completed, return its runs."""
    airflow(
        s,
        "backfill",
        "create",
        "--dag-id",
        "ingest_events",
        "--from-date",
        window.first.isoformat(),
        "--to-date",
        window.last.isoformat(),
        "--max-active-runs",
        "4",
        *flags,
    )
    backfill = client.get("/backfills", params={"dag_id": "ingest_events", "order_by": "-id"}).json()
    backfill_id = backfill["backfills"][0]["id"]
    wait_for(
        lambda: client.get(f"/backfills/{backfill_id}").json()["completed_at"],
        f"backfill {backfill_id} to complete",
        180 + 30 * len(window.days),
        s,
    )
    return dag_runs(client, "ingest_events", run_type="backfill")


def outlet_states(client: httpx.Client, runs: list[dict]) -> dict[date, str]:
    """The state of each run's outlet task (``validate_raw``, which emits ``recomart_raw_events``) by day."""
    states = {}
    for run in runs:
        path = f"/dags/ingest_events/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/validate_raw"
        response = client.get(path)
        response.raise_for_status()
        states[date.fromisoformat(run["logical_date"][:10])] = response.json()["state"]
    return states


def tries(client: httpx.Client, runs: list[dict]) -> set[tuple[tuple[int, str], ...]]:
    """The distinct try histories ((try_number, state), ...) of the ingest tasks of ``runs``."""
    histories = set()
    for run in runs:
        for task_id in INGEST_TASKS:
            path = f"/dags/ingest_events/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/{task_id}/tries"
            response = client.get(path)
            response.raise_for_status()
            histories.add(tuple(sorted((t["try_number"], t["state"]) for t in response.json()["task_instances"])))
    return histories


def ledger(dsn: str, window: Window) -> dict[date, tuple[str, int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select logical_date, status, coalesce(records_loaded, 0), coalesce(records_rejected, 0)"
            " from ops.loaded_files"
            " where feed = %s and logical_date between %s and %s",
            (FEED, window.first, window.last),
        ).fetchall()
    return {day: (status, loaded, rejected) for day, status, loaded, rejected in rows}


def count_rows(dsn: str, table: str, window: Window) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"select count(*) from {table} where _logical_date between %s and %s", (window.first, window.last)
        ).fetchone()[0]


# --- fixture -----------------------------------------------------------------------------------
@pytest.fixture(params=WINDOWS)
def backfill_stack(
    request: pytest.FixtureRequest, test_settings: Settings, shared_data: Path, tmp_path: Path
) -> Iterator[tuple[Settings, httpx.Client, Window]]:
    """UCI settings whose by-day folder holds the window's files, the catalogue loaded (dbt's products
    source), and api-server + scheduler + dag-processor with every DAG registered paused."""
    window: Window = request.param
    by_day = shared_data / "uci-online-retail" / "by-day"
    source = tmp_path / "by-day"
    source.mkdir()
    for day in window.days:
        if (by_day / f"{day}.csv").is_file():
            (source / f"{day}.csv").symlink_to(by_day / f"{day}.csv")
    prefix = f"{test_settings.db_prefix}_{request.node.callspec.id}"  # own databases per window
    s = dataclasses.replace(
        test_settings,
        dataset="uci",
        uci_dir=source,
        landing_dir=tmp_path / "landing",
        db_prefix=prefix,
        feast_project=prefix,
        model_name=prefix,
    )
    services.ensure_databases(s)
    try:
        prepare_dataset(s)
        with serve_in_thread(catalog_file(s)) as base_url:
            ingest_catalog_snapshot(s.warehouse_url, base_url, full_refresh=True)
        airflow_migrate(s)
        url = start_airflow(s, COMPONENTS, paused_at_creation=True)
        user, password = airflow_login(s)
        token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        token.raise_for_status()
        with httpx.Client(
            base_url=f"{url}/api/v2", timeout=30, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        ) as client:
            yield s, client, window
    finally:
        stop_airflow(s, COMPONENTS)
        services.drop_databases(s)


# --- the procedure -----------------------------------------------------------------------------
def test_backfill_rerun_and_one_transform(backfill_stack: tuple[Settings, httpx.Client, Window]) -> None:
    s, client, window = backfill_stack
    files = sorted(s.uci_dir.glob("*.csv"))
    in_files = sum(csv_records(p) for p in files)
    if window.whole_data_set:
        assert in_files == UCI_ROWS
    with_file = {date.fromisoformat(p.stem) for p in files}
    wait_for(
        lambda: all(client.get(f"/dags/{d}").status_code == 200 for d in ("ingest_events", "transform")),
        "the dag-processor to register ingest_events and transform",
        240,
        s,
    )

    # a deployment runs ingest_events unpaused; this stack registered every DAG paused, so nothing ran yet
    set_paused(client, "ingest_events", False)
    set_paused(client, "transform", True)  # step 3

    # step 4: the backfill; every run succeeds on its first try
    runs = run_backfill(s, client, window)
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in window.days]
    assert {r["state"] for r in runs} == {"success"}
    assert tries(client, runs) <= {((1, "success"),), ((1, "skipped"),)}
    # a day without a file loads nothing new: its outlet task ends skipped and emits no asset event
    assert outlet_states(client, runs) == {d: "success" if d in with_file else "skipped" for d in window.days}

    # the ledger has one row per day: loaded where a file exists, skipped_missing (uci_orders: skip) elsewhere
    rows = ledger(s.warehouse_url, window)
    assert {d: r[0] for d, r in rows.items()} == {
        d: "loaded" if d in with_file else "skipped_missing" for d in window.days
    }
    loaded, quarantined = (
        count_rows(s.warehouse_url, "raw.uci_orders", window),
        count_rows(s.warehouse_url, "quarantine.uci_orders", window),
    )
    assert loaded + quarantined == in_files
    assert (sum(r[1] for r in rows.values()), sum(r[2] for r in rows.values())) == (loaded, quarantined)

    # unpausing ingest_events also started its latest scheduled run: let it finish before the checksums
    wait_for(
        lambda: not dag_runs(client, "ingest_events", state=["queued", "running"]), "no ingest_events run left", 300, s
    )
    before = table_checksums(s.warehouse_url)

    # step 5: the re-run clears the same runs; every task runs a second try; the tables stay identical
    set_paused(client, "transform", True)
    rerun = run_backfill(s, client, window, "--reprocess-behavior", "completed")
    assert sorted(r["dag_run_id"] for r in rerun) == sorted(r["dag_run_id"] for r in runs)
    assert {r["state"] for r in rerun} == {"success"}
    assert {history[1] for history in tries(client, rerun)} <= {(2, "success"), (2, "skipped")}
    assert set(outlet_states(client, rerun).values()) == {"skipped"}  # nothing changed: no asset event
    assert table_checksums(s.warehouse_url) == before

    # only the first backfill's runs that loaded a file emitted an asset event; the paused consumer got no run
    run_ids = {r["dag_run_id"] for r in runs}
    events = collect(client, "/assets/events", "asset_events", source_dag_id="ingest_events")
    assert sum(e["source_run_id"] in run_ids for e in events) == sum(d in with_file for d in window.days)
    assert dag_runs(client, "transform") == []

    # step 6: downstream once
    set_paused(client, "transform", False)
    client.post("/dags/transform/dagRuns", json={"logical_date": None}).raise_for_status()

    def transform_done() -> bool:
        states = {r["state"] for r in dag_runs(client, "transform")}
        if "failed" in states:
            pytest.fail("the transform run failed; see the task logs under AIRFLOW_HOME/logs/dag_id=transform")
        return states == {"success"}

    wait_for(transform_done, "the triggered transform run", 3600 if window.whole_data_set else 600, s)
    assert [r["run_type"] for r in dag_runs(client, "transform")] == ["manual"]
    assert ledger(s.warehouse_url, window) == rows
