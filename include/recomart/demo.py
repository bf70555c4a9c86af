"""The main job: data -> Airflow DAG runs (ingest, dbt + Feast, train, recommend) -> a short report."""

from __future__ import annotations

import time
from collections.abc import Callable

from recomart import processes, services
from recomart.config import Settings
from recomart.report import print_report
from recomart.stack import start_catalog_api
from recomart.tools import airflow_dags_test, airflow_migrate


def _step(title: str) -> Callable[[], None]:
    started = time.monotonic()
    print(f"\n==> {title}", flush=True)

    def done() -> None:
        print(f"    done in {time.monotonic() - started:.1f}s", flush=True)

    return done


def prepare_landing(s: Settings) -> None:
    """Put the data set's files into the landing folder (generate, or link the UCI files)."""
    from recomart.datasets.landing import prepare_dataset

    print(f"    {prepare_dataset(s)}")


def run_chain(s: Settings, *, quiet: bool = True) -> None:
    """Run the five DAGs in order with `airflow dags test` (the scheduler's asset chaining is
    exercised by `recomart up` and the real-scheduler test)."""
    from recomart.datasets.landing import landing_days

    days = landing_days(s)
    if not days:
        raise RuntimeError(f"no landing files for data set {s.dataset!r} under {s.landing_dir}")
    runs: list[tuple[str, dict | None]] = [
        ("ingest_catalog", None),
        ("ingest_events", {"start_day": days[0].isoformat(), "end_day": days[-1].isoformat()}),
        ("transform", None),
        ("train", None),
        ("recommend", None),
    ]
    log = None if quiet else print
    for dag_id, conf in runs:
        done = _step(f"airflow dags test {dag_id}" + (f" (days {days[0]} .. {days[-1]})" if conf else ""))
        airflow_dags_test(s, dag_id, conf=conf, log=log)
        done()


def run_demo(s: Settings) -> int:
    """Everything from a fresh checkout to recommendations you can query, then a report."""
    done = _step("services (Postgres, Redis), databases and warehouse migrations")
    services.ensure_services(s, log=print)
    done()
    done = _step("Airflow metadata database (airflow db migrate)")
    airflow_migrate(s)
    done()
    done = _step(f"landing files for data set '{s.dataset}'")
    prepare_landing(s)
    done()
    done = _step("catalog API")
    start_catalog_api(s)
    done()
    try:
        run_chain(s)
    finally:
        processes.stop(s, "catalog-api")
    print_report(s)
    return 0
