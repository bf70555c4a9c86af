"""
### ingest_catalog

Pages through the catalog HTTP API (connection `recomart_catalog_api`) and upserts `raw.products`.

* Timeouts, exponential back-off with jitter, `Retry-After`, and a cap on the total retry time.
* Each record is validated; invalid ones go to `quarantine.products` with the reason.
* A run commits a complete snapshot of what it fetched, or nothing.
* Incremental by default: only products updated since the last successful run (watermark in `ops`).
  Tick `full_refresh` in the trigger form to fetch everything.

Emits `recomart_raw_products`, which starts `transform`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from recomart_dag_utils.assets import RAW_PRODUCTS
from recomart_dag_utils.defaults import DEFAULT_ARGS, catalog_base_url, fail_fast_on_bad_data, warehouse_dsn


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
            description="Ignore the watermark and fetch the whole catalogue.",
        ),
    },
)
def ingest_catalog():
    @task
    def fetch_and_upsert_products(params=None) -> dict:
        """Fetch the catalogue pages and upsert them in one transaction."""
        from recomart.pipeline import ingest_catalog_snapshot

        return ingest_catalog_snapshot(
            warehouse_dsn(), catalog_base_url(), full_refresh=bool(params.get("full_refresh"))
        )

    @task(outlets=[RAW_PRODUCTS])
    def validate_products(load_summary: dict, outlet_events=None) -> dict:
        """Great Expectations on raw.products; only a valid catalogue publishes the asset event."""
        from recomart.config import settings
        from recomart.pipeline import validate_raw_tables

        with fail_fast_on_bad_data():
            result = validate_raw_tables(warehouse_dsn(), settings(), tables=["products"])
        outlet_events[RAW_PRODUCTS].extra = load_summary
        return result

    validate_products(fetch_and_upsert_products())


ingest_catalog()
