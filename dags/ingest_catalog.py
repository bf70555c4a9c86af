"""
### ingest_catalog

Pages through the catalog HTTP API (connection `recomart_catalog_api`) and upserts `raw.products`.

* Timeouts, exponential back-off with jitter, `Retry-After`, and a cap on the total retry time.
* Each record is validated; invalid ones go to `quarantine.products` with the reason.
* A run commits a complete snapshot of what it fetched, or nothing.
* Every page comes from one snapshot of the catalogue (pinned by the API); if the catalogue changes
  too often to read one whole, the run fails rather than commit an incomplete catalogue.
* Incremental by default: products updated since the last successful run (watermark in `ops`), plus
  the quarantined products, re-fetched by id until a valid record of each arrives.
* A full snapshot whenever the last one is `RECOMART_CATALOG_FULL_SNAPSHOT_HOURS` (default 24, at most
  24) old at the run's data interval end, or when `full_refresh` is ticked in the trigger form:
  products absent from it are marked inactive (never deleted); a product that reappears is active again.

Emits `recomart_raw_products`, which starts `transform`; a run that inserted, updated, deactivated or
reactivated no product ends with `validate_products` skipped and emits no event.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from recomart_dag_utils.assets import RAW_PRODUCTS
from recomart_dag_utils.defaults import (
    DEFAULT_ARGS,
    catalog_base_url,
    fail_fast_on_bad_data,
    skip_when_unchanged,
    warehouse_dsn,
)


@dag(
    dag_id="ingest_catalog",
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "ingest", "catalog"],
    doc_md=__doc__,
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Take a full snapshot now: fetch the whole catalogue and mark absent products inactive.",
        ),
    },
)
def ingest_catalog():
    @task
    def fetch_and_upsert_products(params=None, data_interval_end=None) -> dict:
        """Fetch the catalogue pages and upsert them in one transaction (a full snapshot when due)."""
        from recomart.config import settings
        from recomart.tasks.ingest_catalog import ingest_catalog_snapshot

        return ingest_catalog_snapshot(
            warehouse_dsn(),
            catalog_base_url(),
            full_refresh=bool(params.get("full_refresh")),
            full_snapshot_hours=settings().catalog_full_snapshot_hours,
            as_of=data_interval_end,
        )

    @task(outlets=[RAW_PRODUCTS])
    def validate_products(load_summary: dict, outlet_events=None) -> dict:
        """Great Expectations on raw.products; only a valid catalogue that changed publishes the asset
        event (a run that changed no product ends skipped: no event, nothing downstream runs)."""
        from recomart.config import settings
        from recomart.tasks.ingest_catalog import validate_products as validate

        skip_when_unchanged(load_summary)
        with fail_fast_on_bad_data():
            result = validate(warehouse_dsn(), settings())
        outlet_events[RAW_PRODUCTS].extra = load_summary
        return result

    validate_products(fetch_and_upsert_products())


ingest_catalog()
