"""The catalog API (real uvicorn server) and ``ingest_catalog`` against the real warehouse Postgres."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from recomart.catalog_api.app import serve_in_thread
from recomart.datasets.generator import generate
from recomart.ingest.catalog import CatalogIngestError, ingest_catalog
from recomart.warehouse.migrate import migrate_connection

pytestmark = pytest.mark.integration

_BUSINESS_SQL = """
select item_id, title, coalesce(description, ''), category, coalesce(brand, ''), price::text,
       to_char(updated_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS')
from raw.products
"""


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``products.csv``."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_rows(rows: list[dict[str, str]]) -> set[tuple[str, ...]]:
    """The business columns of ``products.csv`` rows, as :func:`table_rows` reads them back."""
    return {
        (r["item_id"], r["title"], r["description"], r["category"], r["brand"], r["price"], r["updated_at"])
        for r in rows
    }


def table_rows(dsn: str) -> set[tuple[str, ...]]:
    """The business columns of ``raw.products`` as text."""
    with psycopg.connect(dsn) as conn:
        return set(conn.execute(_BUSINESS_SQL).fetchall())


def _state(dsn: str) -> tuple:
    """Everything a failed run must leave untouched, including load ids and load times."""
    with psycopg.connect(dsn) as conn:
        return (
            conn.execute("select md5(string_agg(t::text, ',' order by item_id)) from raw.products t").fetchone(),
            conn.execute("select count(*) from quarantine.products").fetchone(),
            conn.execute("select watermark, last_load_id from ops.catalog_watermark").fetchall(),
        )


@pytest.fixture(scope="module")
def catalog_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog") / "generated"
    generate(out, users=20, items=450, days=2, end_date=date(2026, 1, 31), seed=11)
    return out / "products.csv"


@pytest.fixture(scope="module")
def api(catalog_csv: Path) -> Iterator[str]:
    with serve_in_thread(catalog_csv, enable_faults=True) as url:
        yield url


@pytest.fixture
def faults(api: str) -> Iterator[Callable[..., dict]]:
    """Set the API's faults (``POST /admin/faults``); reset before and after each test."""

    def set_faults(**settings: object) -> dict:
        response = httpx.post(f"{api}/admin/faults", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    set_faults()
    yield set_faults
    set_faults()


@pytest.fixture
def dsn(warehouse_dsn: str) -> str:
    """The warehouse with empty catalogue tables."""
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        migrate_connection(conn)
        migrate_connection(conn)  # idempotent
        conn.execute("truncate raw.products, quarantine.products, ops.catalog_watermark")
    return warehouse_dsn


def test_full_load_matches_the_csv_and_a_rerun_changes_nothing(
    dsn: str, api: str, catalog_csv: Path, faults: Callable[..., dict]
) -> None:
    rows = csv_rows(catalog_csv)
    first = ingest_catalog(dsn, api, page_size=100)
    assert (first.fetched, first.inserted, first.updated, first.quarantined) == (len(rows), len(rows), 0, 0)
    assert first.pages == math.ceil(len(rows) / 100) and first.retries == 0
    assert table_rows(dsn) == expected_rows(rows)
    assert first.watermark == max(datetime.fromisoformat(r["updated_at"]).replace(tzinfo=UTC) for r in rows)
    before = _state(dsn)

    second = ingest_catalog(dsn, api, page_size=100)
    assert (second.fetched, second.upserted, second.unchanged) == (len(rows), 0, len(rows))
    after = _state(dsn)
    assert after[0] == before[0]  # business columns, payload, _load_id and _loaded_at all untouched
    assert table_rows(dsn) == expected_rows(rows)


def test_survives_500s_and_429_with_retry_after(
    dsn: str, api: str, catalog_csv: Path, faults: Callable[..., dict]
) -> None:
    rows = csv_rows(catalog_csv)
    faults(error_next=2, rate_limit_next=1, retry_after_s=1)
    started = time.monotonic()
    result = ingest_catalog(dsn, api, page_size=100, max_retry_s=30)
    assert time.monotonic() - started >= 1.0  # waited for Retry-After
    assert result.retries == 3 and result.fetched == len(rows)
    served = httpx.get(f"{api}/admin/faults", timeout=5).json()["stats"]
    assert (served["error"], served["rate_limit"]) == (2, 1)
    assert table_rows(dsn) == expected_rows(rows)


def test_survives_random_errors_truncated_json_and_timeouts(
    dsn: str, api: str, catalog_csv: Path, faults: Callable[..., dict]
) -> None:
    rows = csv_rows(catalog_csv)
    faults(
        seed=5,
        error_rate=0.2,
        truncate_rate=0.15,
        rate_limit_rate=0.1,
        retry_after_s=0,
        truncate_next=1,
        slow_next=1,
        slow_s=2.0,
    )
    result = ingest_catalog(dsn, api, page_size=50, timeout_s=0.5, max_retry_s=60)
    served = httpx.get(f"{api}/admin/faults", timeout=5).json()["stats"]
    assert served.get("slow") == 1 and served.get("truncate", 0) >= 1 and served.get("error", 0) >= 1
    assert result.retries == served["requests"] - result.pages >= 3
    assert result.fetched == len(rows) and table_rows(dsn) == expected_rows(rows)


def test_api_down_fails_within_the_retry_budget_and_commits_nothing(
    dsn: str, api: str, faults: Callable[..., dict]
) -> None:
    ingest_catalog(dsn, api, page_size=100)
    before = _state(dsn)
    faults(error_rate=1.0)
    started = time.monotonic()
    with pytest.raises(CatalogIngestError, match="gave up after"):
        ingest_catalog(dsn, api, page_size=100, max_retry_s=2.0)
    assert time.monotonic() - started < 10
    assert _state(dsn) == before


def test_schema_change_fails_the_run_and_commits_nothing(dsn: str, api: str, faults: Callable[..., dict]) -> None:
    ingest_catalog(dsn, api, page_size=100)
    before = _state(dsn)
    faults(schema_change=True)
    with pytest.raises(CatalogIngestError, match="schema changed"):
        ingest_catalog(dsn, api, page_size=100)
    assert _state(dsn) == before


def test_invalid_records_are_quarantined_with_reason_and_payload(
    dsn: str, api: str, catalog_csv: Path, faults: Callable[..., dict]
) -> None:
    rows = csv_rows(catalog_csv)
    faults(seed=3, invalid_rate=0.1)
    result = ingest_catalog(dsn, api, page_size=100)
    assert 0 < result.quarantined < len(rows) * 0.25
    with psycopg.connect(dsn) as conn:
        quarantined = conn.execute(
            "select raw_record, reason, source_file, line_number from quarantine.products where load_id = %s",
            (result.load_id,),
        ).fetchall()
    assert len(quarantined) == result.quarantined
    bad_ids = {json.loads(raw)["item_id"] for raw, *_ in quarantined}
    assert all(reason and source.startswith(api) and line >= 1 for _, reason, source, line in quarantined)
    assert table_rows(dsn) == {row for row in expected_rows(rows) if row[0] not in bad_ids}


def test_incremental_run_fetches_only_changes_since_the_watermark(dsn: str, catalog_csv: Path, tmp_path: Path) -> None:
    served = tmp_path / "products.csv"
    shutil.copy(catalog_csv, served)
    rows = csv_rows(served)
    with serve_in_thread(served) as url:
        full = ingest_catalog(dsn, url, page_size=100, incremental=True)
        assert full.updated_since is None and full.inserted == len(rows)

        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        for row in rows[:3]:
            row.update(title=row["title"] + " (new)", price="1.49", updated_at=now)
        new_item = dict(rows[0], item_id="ZNEW0001", title="Brand new item", updated_at=now)
        rows.append(new_item)
        with open(served, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.utime(served, ns=(time.time_ns(), time.time_ns() + 10**9))  # the API reloads on a new mtime

        delta = ingest_catalog(dsn, url, page_size=100, incremental=True)
    assert delta.updated_since == full.watermark
    assert (delta.updated, delta.inserted) == (3, 1)
    assert delta.fetched - delta.upserted <= 3  # only records at the old watermark are re-fetched
    assert delta.watermark == datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert table_rows(dsn) == expected_rows(rows)
