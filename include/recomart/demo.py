"""The main job: data -> Airflow DAG runs (ingest, dbt + Feast, train, recommend) -> a short report.

Every step is timed; the timings go into the report and into ``<state>/demo_timings.json``
(``benchmarks/demo.py`` reads them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recomart import processes, services
from recomart.chain_progress import ChainTimings, run_dags_with_progress
from recomart.config import Settings
from recomart.report import print_report
from recomart.stack import start_catalog_api

CHAIN = ("ingest_catalog", "ingest_events", "transform", "train", "recommend")
TIMINGS_FILE = "demo_timings.json"


@dataclass
class DemoTimings:
    """``steps``: (name, seconds) in order; ``tasks``: ``dag.task`` -> seconds; ``runs``: the DAG runs."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    tasks: dict[str, float] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def timed(self, name: str, title: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` under a ``==> title`` line and record its seconds as step ``name``."""
        print(f"\n==> {title}", flush=True)
        started = time.monotonic()
        result = action()
        seconds = round(time.monotonic() - started, 1)
        self.steps.append((name, seconds))
        print(f"    done in {seconds:.1f}s", flush=True)
        return result

    def add_chain(self, chain: ChainTimings) -> None:
        self.runs.update(chain.runs)
        self.tasks.update(chain.tasks)
        self.steps.append(("airflow_startup", chain.startup_s or 0.0))
        if chain.migrate_s is not None:
            self.steps.append(("airflow_migrate", chain.migrate_s))
        self.steps += [(dag_id, run["seconds"]) for dag_id, run in chain.runs.items()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_s": round(sum(seconds for _, seconds in self.steps), 1),
            "steps": [{"name": name, "seconds": seconds} for name, seconds in self.steps],
            "tasks": self.tasks,
            "runs": self.runs,
        }


def prepare_landing(s: Settings) -> None:
    """Put the data set's files into the landing folder (generate, or link the UCI files)."""
    from recomart.datasets.landing import prepare_dataset

    print(f"    {prepare_dataset(s)}")


def chain_runs(s: Settings) -> list[dict[str, Any]]:
    """The five DAG runs of the chain, in order; ``ingest_events`` loads every landing day."""
    from recomart.datasets.landing import landing_days

    days = landing_days(s)
    if not days:
        raise RuntimeError(f"no landing files for data set {s.dataset!r} under {s.landing_dir}")
    window = {"start_day": days[0].isoformat(), "end_day": days[-1].isoformat()}
    return [{"dag_id": dag_id, "conf": window if dag_id == "ingest_events" else None} for dag_id in CHAIN]


def run_chain(s: Settings, *, migrate: bool = False) -> ChainTimings:
    """Run the five DAGs in order with Airflow's ``dag.test()`` in one process, after ``airflow db
    migrate`` when ``migrate`` (the scheduler's asset chaining is exercised by `recomart up` and the
    real-scheduler test)."""
    return run_dags_with_progress(s, chain_runs(s), migrate=migrate)


def run_demo(s: Settings) -> int:
    """Everything from a fresh checkout to recommendations you can query, then a report."""
    timings = DemoTimings()
    timings.timed(
        "services",
        "services (Postgres, Redis), databases and warehouse migrations",
        lambda: services.ensure_services(s, log=print),
    )
    timings.timed("landing", f"landing files for data set '{s.dataset}'", lambda: prepare_landing(s))
    timings.timed("catalog_api", "catalog API", lambda: start_catalog_api(s))
    try:
        s.airflow_home.mkdir(parents=True, exist_ok=True)
        timings.add_chain(run_chain(s, migrate=True))
    finally:
        timings.timed("stop_catalog_api", "stop the catalog API", lambda: processes.stop(s, "catalog-api"))
    figures = timings.as_dict()
    (s.state_dir / TIMINGS_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    print_report(s, train_run_id=timings.runs["train"]["run_id"], timings=figures)
    return 0
