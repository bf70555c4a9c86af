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

import httpx

from recomart import processes, services
from recomart.chain_progress import ChainTimings, run_dags_with_progress
from recomart.config import Settings
from recomart.report import print_report
from recomart.serving import server
from recomart.stack import start_catalog_api
from recomart.stream import worker as stream_worker
from recomart.stream.watch import busiest_user, print_watched, watch
from recomart.tools import tool_env

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


LIVE_SECONDS = 10.0
LIVE_RATE = 200.0


def _reranking_problem(s: Settings) -> str | None:
    """None once the API serves a generation with ``@champion`` and the feature store loaded."""
    try:
        checks = httpx.get(f"{s.api_url}/readyz", timeout=2).json()["checks"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return f"API not answering /readyz ({exc})"
    waiting = {name: checks.get(name) for name in ("generation", "model", "features") if checks.get(name) != "ok"}
    return f"API not ready to re-rank: {waiting}" if waiting else None


def _start_speed_layer(s: Settings) -> list[str]:
    """Start the API and the stream worker where they are not running; returns the names started."""
    started = []
    if not processes.running_pid(s, server.PROCESS_NAME):
        print("starting the RecoMart API for the live demo ...", flush=True)
        server.start_api(s)
        started.append(server.PROCESS_NAME)
    if not processes.running_pid(s, stream_worker.PROCESS_NAME):
        print("starting the stream worker for the live demo ...", flush=True)
        processes.start(s, stream_worker.PROCESS_NAME, stream_worker.worker_args(), tool_env(s))
        started.append(stream_worker.PROCESS_NAME)
    deadline = time.monotonic() + 120
    while (problem := stream_worker.group_problem(s) or _reranking_problem(s)) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the speed layer did not become ready within 120 s: {problem}")
        time.sleep(0.5)
    return started


def run_live(s: Settings, seconds: float = LIVE_SECONDS, rate: float = LIVE_RATE) -> int:
    """``demo --live``: one user's list before and after ``seconds`` of simulated traffic through the API
    and the stream worker (what this started is stopped again)."""
    started = _start_speed_layer(s)
    try:
        user = busiest_user(s, int(rate * seconds))
        if user is None:
            print("live demo: the simulator has no events to send for this shop")
            return 1
        print(f"\nLive demo: {seconds:.0f} s of the shop's next day at {rate:.0f} events/s; watching {user}")
        watched = watch(s, user, rate, seconds)
        print_watched(watched)
        return 0 if watched.summary.refused == 0 else 1
    finally:
        for name in reversed(started):
            processes.stop(s, name)
