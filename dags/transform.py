"""
### transform

Runs when new raw events or products land (`recomart_raw_events` OR `recomart_raw_products`):

1. `dbt build` of `dbt_project/` (staging views, intermediate, marts, snapshot and all tests).
   Incremental: `int_interactions` and the feature histories recompute only their lookback days and
   the days of late-loaded events; the `full_refresh` param (set by `./recomart backfill`) rebuilds
   every mart from raw, with the same rows.
   A failing model or test fails this task, the log names it, and nothing downstream runs. dbt's
   target (manifest, partial parse) is kept under `.state/dbt/<warehouse>/`, so later builds re-parse
   only what changed.
2. Great Expectations suites on the marts (critical failures stop here, naming the expectation).
3. Beside them, `feast apply` of `feature_repo/` (SQL registry in Postgres), skipped when the
   definitions are unchanged since the last apply (their digest is kept in the registry's database).
   It registers definitions only, no data: materialize still waits for the validation.
4. After both, materialize the feature views into Redis for an **explicit window**: the union of the windows in
   the triggering asset events' `extra`, extended to the feature-history rows dbt wrote since the mark the last
   complete materialization left in Redis (without one: the load ledger's range and the whole histories);
   never `now()`.

5. Beside Feast, after the mart validation: the data report (`recomart.data_report`) written to
   `.state/reports/<day>.html` (the run's logical date; an asset-triggered run has none, so the last
   day of its triggering windows) and logged to MLflow (experiment `recomart-data-report`). A failing
   report fails only its task: Feast, materialize and `recomart_marts` do not wait for it.

Emits `recomart_marts`, which starts `train`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task
from recomart_dag_utils.assets import MARTS, RAW_EVENTS, RAW_PRODUCTS
from recomart_dag_utils.defaults import DEFAULT_ARGS, fail_fast_on_bad_data, warehouse_dsn


@dag(
    dag_id="transform",
    schedule=(RAW_EVENTS | RAW_PRODUCTS),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "dbt", "feast"],
    doc_md=__doc__,
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Rebuild every incremental mart from raw (dbt --full-refresh) instead of the daily window.",
        ),
    },
)
def transform():
    @task
    def dbt_build(params=None):
        """`dbt build` of the whole project (incremental, or --full-refresh when asked); fails with the
        names of failing nodes."""
        from recomart.config import settings
        from recomart.tasks.transform import build_warehouse_models

        return build_warehouse_models(settings(), full_refresh=bool((params or {}).get("full_refresh")))

    @task
    def validate_marts(params=None) -> dict:
        """Great Expectations on the marts; a critical failure stops Feast and training. The ratings'
        suite reads the pairs loaded since its last pass, every pair after a full refresh."""
        from recomart.config import settings
        from recomart.tasks.transform import validate_mart_tables

        with fail_fast_on_bad_data():
            every_row = bool((params or {}).get("full_refresh"))
            return validate_mart_tables(warehouse_dsn(), settings(), every_row=every_row)

    @task
    def feast_apply():
        """Register entities, feature views and feature services in the SQL registry."""
        from recomart.config import settings
        from recomart.tasks.transform import apply_feature_repo

        apply_feature_repo(settings())

    @task(outlets=[MARTS])
    def materialize(triggering_asset_events=None, outlet_events=None):
        """Materialize the explicit window taken from the asset events and the load ledger."""
        from recomart.config import settings
        from recomart.tasks.transform import materialize_features, windows_from_asset_events

        windows = windows_from_asset_events(triggering_asset_events)
        summary = materialize_features(settings(), warehouse_dsn(), windows)
        outlet_events[MARTS].extra = summary
        return summary

    @task
    def data_report(logical_date=None, triggering_asset_events=None) -> dict:
        """Write the data report for the run's day and log it to MLflow."""
        from recomart.config import settings
        from recomart.tasks.transform import report_day, windows_from_asset_events, write_data_report

        day = report_day(logical_date, windows_from_asset_events(triggering_asset_events), warehouse_dsn())
        return write_data_report(settings(), warehouse_dsn(), day)

    built = dbt_build()
    validated = built >> validate_marts()
    [validated, built >> feast_apply()] >> materialize()
    validated >> data_report()


transform()
