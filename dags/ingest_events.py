"""
### ingest_events

Loads the landing CSV files of the configured data set (`RECOMART_DATASET`: the generated shop by
default, or UCI Online Retail) into `raw.*` with `COPY`, one transaction per file and logical date.

* **Idempotent**: re-running a day, or re-delivering the same file, changes nothing; a corrected file
  replaces that day's rows atomically. Every load attempt is recorded in `ops.loaded_files` (`is_live`: the
  load whose rows are in `raw`).
* **Lossless**: malformed records go to `quarantine.<feed>` with the reason; the task fails only when the
  rejected share exceeds the feed's threshold (the day's live rows stay), when a file's header is wrong or
  when a landing symlink leaves the landing folder. A header-only file is recorded `empty` (a GX warning).
* **Validated**: Great Expectations suites run on the loaded partition (`validate_raw`); a critical
  failure fails the run without retries and names the expectation and sample values.
* **Window**: the run's data interval (one UTC day per run, `CronDataIntervalTimetable`), or the
  trigger-form parameters `start_day` / `end_day` (exactly `YYYY-MM-DD`) to load a range in one run.

Emits `recomart_raw_events` with the loaded window in the event's `extra`, which starts `transform`.
A run that loaded nothing new (every file unchanged or missing) ends with `validate_raw` skipped and
emits no event: unchanged data starts nothing downstream.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from recomart_dag_utils.assets import RAW_EVENTS
from recomart_dag_utils.defaults import DEFAULT_ARGS, fail_fast_on_bad_data, skip_when_unchanged, warehouse_dsn


@dag(
    dag_id="ingest_events",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2010, 12, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["recomart", "ingest"],
    doc_md=__doc__,
    params={
        "start_day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="First day to load (optional)",
            description="Load a range of days in one run; leave empty to load the run's data interval.",
        ),
        "end_day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last day to load (optional)",
            description="Inclusive; defaults to start_day.",
        ),
    },
)
def ingest_events():
    @task
    def load_landing_files(params=None, data_interval_start=None, data_interval_end=None) -> dict:
        """Load every feed of the data set for each day of the window."""
        from recomart.config import settings
        from recomart.tasks.ingest_events import days_in_window, ingest_landing_files

        with fail_fast_on_bad_data():
            days = days_in_window(
                params.get("start_day"), params.get("end_day"), data_interval_start, data_interval_end
            )
            return ingest_landing_files(warehouse_dsn(), settings(), days)

    @task(outlets=[RAW_EVENTS])
    def validate_raw(load_summary: dict, outlet_events=None) -> dict:
        """Great Expectations on what was loaded; only a valid load that changed something publishes the
        asset event (a run that loaded nothing new ends skipped: no event, nothing downstream runs)."""
        from recomart.config import settings
        from recomart.tasks.ingest_events import validate_loaded_days

        skip_when_unchanged(load_summary)
        with fail_fast_on_bad_data():
            result = validate_loaded_days(warehouse_dsn(), settings(), load_summary["day_list"])
        outlet_events[RAW_EVENTS].extra = load_summary["window"]
        return result

    validate_raw(load_landing_files())


ingest_events()
