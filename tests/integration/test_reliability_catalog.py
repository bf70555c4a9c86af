"""Catalogue reliability (issue 12): quarantined records come back, deleted products turn inactive,
paging a moving catalogue never skips, bad API input gets a 4xx, and fault injection is off by default.

Every test runs the real catalog API under uvicorn (or as its own process) against this module's
private warehouse database; the DAG test runs ``ingest_catalog`` through ``airflow dags test``.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from test_catalog import csv_rows, expected_rows, table_rows  # the same readers as test_catalog.py

from recomart import processes
from recomart.catalog_api.app import serve_in_thread
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.ingest.catalog import CatalogIngestError, ingest_catalog
from recomart.warehouse.migrate import migrate_connection

pytestmark = pytest.mark.integration


# --- helpers ---------------------------------------------------------------------------------------
def _write(path: Path, rows: list[dict[str, str]]) -> None:
    """Replace the served file atomically (the API never reads half a file) with a new modification time."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _rows(dsn: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def catalog_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog") / "generated"
    generate(out, users=20, items=450, days=2, end_date=date(2026, 1, 31), seed=11)
    return out / "products.csv"


@pytest.fixture
def served(catalog_csv: Path, tmp_path: Path) -> Path:
    """A private copy of the catalogue that a test may change while the API serves it."""
    path = tmp_path / "products.csv"
    _write(path, csv_rows(catalog_csv))
    return path


@pytest.fixture
def api(served: Path) -> Iterator[str]:
    with serve_in_thread(served, enable_faults=True) as url:
        yield url


@pytest.fixture
def faults(api: str) -> Callable[..., dict]:
    def set_faults(**settings: object) -> dict:
        response = httpx.post(f"{api}/admin/faults", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    return set_faults


@pytest.fixture
def dsn(warehouse_dsn: str) -> str:
    """The warehouse with empty catalogue tables."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        migrate_connection(conn)
        conn.execute("truncate raw.products, quarantine.products, ops.catalog_watermark")
    return warehouse_dsn


# --- 1. quarantined records come back ----------------------------------------------------------------
def _touch(rows: list[dict[str, str]], share: int, moment: datetime) -> list[dict[str, str]]:
    """Every ``share``-th product changed at ``moment`` (one second apart)."""
    changed = [dict(r) for r in rows]
    for n, row in enumerate(changed[::share]):
        row.update(title=row["title"] + " v2", updated_at=_stamp(moment + timedelta(seconds=n)))
    return changed


def test_incremental_run_with_corrupted_records_then_a_healthy_run_ends_complete(
    dsn: str, api: str, served: Path, faults: Callable[..., dict]
) -> None:
    ingest_catalog(dsn, api, page_size=100)
    changed = _touch(csv_rows(served), 2, datetime(2026, 3, 1, tzinfo=UTC))
    _write(served, changed)

    faults(seed=7, invalid_rate=0.2)
    broken = ingest_catalog(dsn, api, page_size=100, incremental=True)
    assert broken.updated_since is not None  # an incremental run
    assert 0.1 * broken.fetched < broken.quarantined < 0.3 * broken.fetched
    assert table_rows(dsn) != expected_rows(changed)

    faults()
    healthy = ingest_catalog(dsn, api, page_size=100, incremental=True)
    assert table_rows(dsn) == expected_rows(changed)  # every record arrived, without a full refresh
    # the quarantined keys the watermark had passed were re-fetched by id
    assert healthy.mode == "incremental" and 0 < healthy.looked_up <= broken.quarantined
    assert healthy.resolved == broken.quarantined
    rows = _rows(
        dsn,
        "select item_id, resolved_at, resolved_by_load, resolution from quarantine.products where load_id = %s",
        (broken.load_id,),
    )
    assert len(rows) == broken.quarantined
    assert all(key and at and by == healthy.load_id and how == "loaded" for key, at, by, how in rows)

    again = ingest_catalog(dsn, api, page_size=100, incremental=True)
    assert again.looked_up == 0 and again.upserted == 0


def test_a_record_that_stays_broken_stays_quarantined_until_it_is_fixed(
    dsn: str, api: str, served: Path, faults: Callable[..., dict]
) -> None:
    faults(seed=3, invalid_rate=0.2)
    first = ingest_catalog(dsn, api, page_size=100, incremental=True)
    second = ingest_catalog(dsn, api, page_size=100, incremental=True)  # still broken: no failure, no resolution
    assert second.quarantined == first.quarantined and second.looked_up > 0 and second.resolved == 0
    unresolved = "select count(*) from quarantine.products where resolved_at is null"
    assert _rows(dsn, unresolved) == [(2 * first.quarantined,)]

    # one broken product is deleted upstream, the others get fixed
    gone = json.loads(_rows(dsn, "select raw_record from quarantine.products limit 1")[0][0])["item_id"]
    _write(served, [r for r in csv_rows(served) if r["item_id"] != gone])
    faults()
    fixed = ingest_catalog(dsn, api, page_size=100, incremental=True)
    assert _rows(dsn, unresolved) == [(0,)]
    how = dict(_rows(dsn, "select item_id, resolution from quarantine.products where resolved_by_load = %s",
                     (fixed.load_id,)))  # fmt: skip
    assert how.pop(gone) == "absent" and set(how.values()) == {"loaded"}
    assert table_rows(dsn) == expected_rows(csv_rows(served))


# --- 2. deleted products turn inactive -----------------------------------------------------------------
def _activity(dsn: str) -> dict[str, tuple]:
    rows = _rows(dsn, "select item_id, active, deactivated_at, deactivated_by_load from raw.products")
    return {item: tuple(rest) for item, *rest in rows}


def test_full_snapshot_marks_absent_products_inactive_and_reappearing_ones_active(dsn: str, api: str, served: Path):
    rows = csv_rows(served)
    first = ingest_catalog(dsn, api, page_size=100)
    assert first.mode == "full" and first.deactivated == 0
    gone = {r["item_id"] for r in rows[:3]}
    _write(served, rows[3:])

    incremental = ingest_catalog(dsn, api, page_size=100, incremental=True, full_snapshot_every=timedelta(hours=24))
    assert incremental.mode == "incremental" and incremental.deactivated == 0
    assert all(active for active, *_ in _activity(dsn).values())

    full = ingest_catalog(dsn, api, page_size=100)
    activity = _activity(dsn)
    assert len(activity) == len(rows)  # marked, never deleted
    assert {item for item, (active, *_) in activity.items() if not active} == gone
    assert all(activity[item][1] is not None and activity[item][2] == full.load_id for item in gone)
    assert full.deactivated == 3

    back = rows[0]["item_id"]
    _write(served, [rows[0], *rows[3:]])
    again = ingest_catalog(dsn, api, page_size=100)
    assert again.reactivated == 1 and again.deactivated == 0
    assert _activity(dsn)[back] == (True, None, None)
    assert {item for item, (active, *_) in _activity(dsn).items() if not active} == gone - {back}


def test_full_snapshot_is_due_after_the_interval_measured_at_as_of(dsn: str, api: str) -> None:
    every = timedelta(hours=24)
    day = datetime(2026, 2, 1, 0, 30, tzinfo=UTC)
    runs = [
        ingest_catalog(dsn, api, incremental=True, full_snapshot_every=every, as_of=moment)
        for moment in (day, day + timedelta(hours=23, minutes=59), day + every, day + every + timedelta(hours=1))
    ]
    assert [r.mode for r in runs] == ["full", "incremental", "full", "incremental"]
    assert _rows(dsn, "select last_full_at, last_full_load_id from ops.catalog_watermark") == [
        (day + every, runs[2].load_id)
    ]


def test_nothing_is_deactivated_when_a_record_of_the_snapshot_has_no_readable_id(
    dsn: str, api: str, served: Path
) -> None:
    rows = csv_rows(served)
    ingest_catalog(dsn, api, page_size=100)
    _write(served, [dict(rows[0], item_id=""), *rows[1:]])  # product 0 served without its id
    result = ingest_catalog(dsn, api, page_size=100)
    assert result.quarantined == 1 and result.deactivated == 0
    assert all(active for active, *_ in _activity(dsn).values())


# --- 2. paging a moving catalogue -------------------------------------------------------------------------
def _when_second_page_is_requested(api: str, change: Callable[[], None]) -> threading.Thread:
    """Run ``change`` once the API got the second page request (which sleeps ``slow_s`` before answering)."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while httpx.get(f"{api}/admin/faults", timeout=5).json()["stats"].get("requests", 0) < 2:
            assert time.monotonic() < deadline, "the second page was never requested"
            time.sleep(0.02)
        change()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_an_item_moving_while_the_client_pages_is_not_skipped(
    dsn: str, api: str, served: Path, faults: Callable[..., dict]
) -> None:
    before = csv_rows(served)
    ordered = sorted(before, key=lambda r: (r["updated_at"], r["item_id"]))
    backward, forward = ordered[-1]["item_id"], ordered[300]["item_id"]  # both served after page 1
    moved = [dict(r) for r in before]
    for row in moved:
        if row["item_id"] == backward:  # to before everything page 1 served
            row.update(title=row["title"] + " moved back", updated_at="2000-01-01 00:00:00")
        elif row["item_id"] == forward:  # to after everything
            row.update(title=row["title"] + " moved on", updated_at=_stamp(datetime(2030, 1, 1)))

    def move() -> None:
        _write(served, moved)
        httpx.get(f"{api}/health", timeout=5)  # the API has read the new file before page 2 is answered

    faults(slow_next=2, slow_s=1.5)
    watcher = _when_second_page_is_requested(api, move)
    result = ingest_catalog(dsn, api, page_size=50)
    watcher.join(timeout=5)
    assert result.fetched == len(before) and result.restarts == 0
    assert table_rows(dsn) == expected_rows(before)  # one whole snapshot: the catalogue as paging began

    later = ingest_catalog(dsn, api, page_size=50, incremental=True)  # changed after the snapshot: next run
    assert {r[0] for r in table_rows(dsn) - expected_rows(before)} == {forward}
    assert later.mode == "incremental"
    ingest_catalog(dsn, api, page_size=50)  # a timestamp moved back shows in the next full snapshot
    assert table_rows(dsn) == expected_rows(moved)


def test_a_snapshot_dropped_while_paging_restarts_or_fails_loudly(
    dsn: str, api: str, served: Path, faults: Callable[..., dict]
) -> None:
    rows = csv_rows(served)
    versions = [[dict(r, title=f"{r['title']} #{n}") for r in rows] for n in range(1, 6)]

    def churn() -> None:  # five new versions: the one being paged is no longer held
        for version in versions:
            _write(served, version)
            httpx.get(f"{api}/health", timeout=5)
            time.sleep(0.01)

    faults(slow_next=2, slow_s=1.5)
    watcher = _when_second_page_is_requested(api, churn)
    result = ingest_catalog(dsn, api, page_size=100)
    watcher.join(timeout=5)
    assert result.restarts == 1 and table_rows(dsn) == expected_rows(versions[-1])

    before = _rows(dsn, "select md5(string_agg(t::text, ',' order by item_id)) from raw.products t")
    _write(served, rows)
    faults(slow_next=2, slow_s=1.5)
    watcher = _when_second_page_is_requested(api, churn)
    with pytest.raises(CatalogIngestError, match="changed while paging"):
        ingest_catalog(dsn, api, page_size=100, max_restarts=0)
    watcher.join(timeout=5)
    assert _rows(dsn, "select md5(string_agg(t::text, ',' order by item_id)) from raw.products t") == before


# --- 6. bad input gets a 4xx ------------------------------------------------------------------------------
def _cursor(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"updated_since": "9999-12-31T23:59:59-23:59"},  # past year 9999 in UTC: OverflowError
        {"updated_since": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
        {"updated_since": "yesterday"},
        {"cursor": base64.urlsafe_b64encode(b"[" * 5_000).decode()},  # RecursionError
        {"cursor": _cursor(["x" * 8_000, "2026-01-01T00:00:00Z", "a"])},  # oversized
        {"cursor": _cursor(["0" * 16, "9999-12-31T23:59:59-23:59", "a"])},  # out of range inside
        {"cursor": _cursor(["9999-12-31T23:59:59-23:59", "a"])},  # the old shape, out of range
        {"cursor": _cursor({"updated_at": "2026-01-01"})},
        {"cursor": "not base64 at all!"},
        {"ids": [f"id{n}" for n in range(501)]},
    ],
    ids=["since-past-9999", "since-before-1", "since-text", "cursor-nested", "cursor-oversized",
         "cursor-out-of-range", "cursor-old-out-of-range", "cursor-object", "cursor-garbage", "too-many-ids"],
)  # fmt: skip
def test_bad_input_gets_a_clear_400(api: str, params: dict) -> None:
    path = "/products/by-ids" if "ids" in params else "/products"
    response = httpx.get(f"{api}{path}", params=params, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


# --- 5. fault injection only when enabled -------------------------------------------------------------------
def test_fault_endpoint_exists_only_when_enabled(catalog_csv: Path) -> None:
    with serve_in_thread(catalog_csv) as url:
        assert httpx.post(f"{url}/admin/faults", json={"error_rate": 1.0}, timeout=5).status_code == 404
        assert httpx.get(f"{url}/admin/faults", timeout=5).status_code == 404
        assert httpx.get(f"{url}/products", params={"limit": 5}, timeout=5).status_code == 200
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "recomart.catalog_api.app", "--products", str(catalog_csv), "--port", str(port)]
    refused = subprocess.run([*command, "--faults", '{"error_rate": 1}'], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--faults needs --enable-faults" in refused.stderr


# --- 2. the DAG: a full snapshot when due, through airflow dags test ----------------------------------------
@pytest.mark.slow  # 53 s: two runs of the DAG (the snapshot logic is tested in-process above)
def test_dag_takes_a_full_snapshot_when_due_and_marks_deleted_products(test_settings: Settings, dsn: str) -> None:
    from recomart.stack import start_catalog_api
    from recomart.tools import airflow_dags_test, airflow_migrate

    s = test_settings
    generate(s.landing_dir / "generated", users=20, items=60, days=2, end_date=date(2026, 1, 31), seed=5)
    products = s.landing_dir / "generated" / "products.csv"
    rows = csv_rows(products)
    airflow_migrate(s)
    start_catalog_api(s)
    try:
        airflow_dags_test(s, "ingest_catalog", logical_date="2026-02-01T00:30:00+00:00")
        _write(products, rows[2:])
        airflow_dags_test(s, "ingest_catalog", logical_date="2026-02-01T12:00:00+00:00")  # same day: incremental
        modes = [_rows(dsn, "select mode, deactivated from ops.catalog_watermark")[0]]
        airflow_dags_test(s, "ingest_catalog", logical_date="2026-02-02T00:30:00+00:00")  # a day later: full
        modes.append(_rows(dsn, "select mode, deactivated from ops.catalog_watermark")[0])
    finally:
        processes.stop(s, "catalog-api")
    assert modes == [("incremental", 0), ("full", 2)]
    last_load = _rows(dsn, "select last_load_id from ops.catalog_watermark")[0][0]
    inactive = _rows(dsn, "select item_id, deactivated_by_load from raw.products where not active")
    assert sorted(inactive) == sorted((r["item_id"], last_load) for r in rows[:2])
