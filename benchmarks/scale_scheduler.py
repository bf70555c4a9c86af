"""The scale study's chain on Airflow's own scheduler (``benchmarks.scale --runner scheduler``).

The deployment's api-server, scheduler and dag-processor are started (LocalExecutor, the default:
``AIRFLOW__CORE__PARALLELISM`` task processes at once), and the chain's DAG runs are triggered one
after another over the REST API, each once the one before it has finished, as the demo's runner runs
them.  The scheduler's own run creation (cron intervals and asset triggers) is switched off
(``[scheduler] use_job_schedule = False``), so only the triggered runs run; everything else is the
deployment a user starts with ``./recomart up``: every task in a process of its own, mapped shard tasks
and the train DAG's parallel branches running side by side.

A run's seconds are Airflow's own, from its ``queued_at`` to its ``end_date`` (the scheduler's latency to
start it included); a task's are from its first instance's start to its last one's end (the span of a
mapped task's instances, which overlap).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from recomart.config import Settings
from recomart.netcheck import free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor")
POLL_S = 1.0
PARSE_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 4 * 3600.0


def scheduler_env() -> dict[str, str]:
    """The study's Airflow settings on top of the deployment's: no runs but the triggered ones, and a
    free port for the scheduler's health-check server."""
    return {
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
    }


def wait_parsed(client: httpx.Client, dag_ids: set[str]) -> None:
    """Wait until the dag-processor has registered every DAG of ``dag_ids``; raises TimeoutError."""
    deadline, found = time.monotonic() + PARSE_TIMEOUT_S, set[str]()
    while time.monotonic() < deadline:
        found = {dag["dag_id"] for dag in client.get("/dags", params={"limit": 100}).json().get("dags", [])}
        if dag_ids <= found:
            return
        time.sleep(POLL_S)
    raise TimeoutError(f"the dag-processor had not registered {sorted(dag_ids - found)} after {PARSE_TIMEOUT_S:.0f}s")


def trigger(client: httpx.Client, dag_id: str, conf: dict[str, Any] | None) -> str:
    """Trigger a run of ``dag_id`` now; returns its run id."""
    body = {"logical_date": datetime.now(UTC).isoformat(), "conf": conf or {}}
    response = client.post(f"/dags/{dag_id}/dagRuns", json=body)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"triggering {dag_id} failed: HTTP {response.status_code} {response.text[:500]}")
    return str(response.json()["dag_run_id"])


def wait_finished(client: httpx.Client, dag_id: str, run_id: str) -> dict[str, Any]:
    """Poll the run until it succeeds or fails; returns the REST API's run object."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
        if run.get("state") in ("success", "failed"):
            return dict(run)
        time.sleep(POLL_S)
    raise TimeoutError(f"{dag_id} run {run_id} did not finish in {RUN_TIMEOUT_S:.0f}s")


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def task_spans(task_instances: list[dict[str, Any]]) -> dict[str, float]:
    """Per task id of the REST API's task instances: seconds from its first instance's start to its last
    instance's end (instances that never ran are left out)."""
    bounds: dict[str, tuple[str, str]] = {}
    for ti in task_instances:
        if not ti.get("start_date") or not ti.get("end_date"):
            continue
        first, last = bounds.get(ti["task_id"], (ti["start_date"], ti["end_date"]))
        bounds[ti["task_id"]] = (min(first, ti["start_date"]), max(last, ti["end_date"]))
    return {task: round(_seconds(first, last), 1) for task, (first, last) in sorted(bounds.items())}


def run_on_scheduler(client: httpx.Client, dag_id: str, conf: dict[str, Any] | None) -> dict[str, Any]:
    """Trigger one run and wait for it: ``{"run_id", "state", "seconds", "tasks"}``."""
    run_id = trigger(client, dag_id, conf)
    run = wait_finished(client, dag_id, run_id)
    instances = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
    return {
        "run_id": run_id,
        "state": run["state"],
        "seconds": round(_seconds(run.get("queued_at") or run.get("start_date"), run.get("end_date")), 1),
        "tasks": task_spans(instances.json().get("task_instances", [])),
    }


def start_components(s: Settings) -> None:
    """Migrate the deployment's metadata database and start its Airflow components (healthy on return)."""
    from recomart.stack import start_airflow
    from recomart.tools import airflow_migrate

    airflow_migrate(s)
    start_airflow(s, COMPONENTS, extra_env=scheduler_env())
