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
from recomart_dag_utils.defaults import DEFAULT_ARGS, catalog_base_url, warehouse_dsn


@dag(
    dag_id="ingest_catalog",
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "ingest", "catalog"],
    doc_md=__doc__,
    params={
        "full_refresh": Param(False, type="boolean", title="Full refresh",
                              description="Ignore the watermark and fetch the whole catalogue."),
    },
)
def ingest_catalog():
    @task(outlets=[RAW_PRODUCTS])
    def fetch_and_upsert_products(params=None, outlet_events=None):
        """Fetch the catalogue pages and upsert them in one transaction."""
        from recomart.pipeline import ingest_catalog_snapshot

        summary = ingest_catalog_snapshot(warehouse_dsn(), catalog_base_url(),
                                          full_refresh=bool(params.get("full_refresh")))
        outlet_events[RAW_PRODUCTS].extra = summary
        return summary

    fetch_and_upsert_products()


ingest_catalog()
