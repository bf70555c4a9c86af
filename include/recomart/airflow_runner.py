"""Run several DAGs one after another in one process, each exactly as ``airflow dags test`` runs it.

``airflow dags test <dag>`` starts Python, imports Airflow, loads its configuration and providers and
parses the DAG folder before it calls ``dag.test()``; its tasks then import pandas, MLflow, Feast or
Great Expectations afresh.  The demo runs five DAGs in a row, so it paid all of that five times.
``python -m recomart.airflow_runner '<json>' [--migrate]`` pays it once (``--migrate`` first does what
``airflow db migrate`` does, see :func:`migrate`): for each ``{"dag_id", "conf"}`` of the
list it finds the DAG as the CLI does (``get_bagged_dag``) and calls the same ``dag.test()``, so the
runs, task instances, XComs and asset events are Airflow's own, in the metadata database.

Progress goes to stdout as lines starting with :data:`MARK` and a JSON object: ``{"event": "migrated",
"seconds"}`` after the migration, ``{"event": "start",
"dag_id"}`` before a run, ``{"event": "end", "dag_id", "run_id", "state", "seconds", "consumed_events"}``
after it.  The process stops at the first run that does not succeed and exits 1.

After each successful run the asset events queued for that DAG before it started are taken off the
queue (:func:`consume_queued_asset_events`): the run has just served them.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

MARK = "[recomart-runner]"


def emit(event: str, **fields: Any) -> None:
    """One progress line for the parent process."""
    print(MARK, json.dumps({"event": event, **fields}, default=str), flush=True)


def migrate() -> None:
    """What ``airflow db migrate`` does (create, or upgrade to Airflow's head revision; a no-op at the
    head), in this process: the runner loads Airflow anyway, a separate CLI process would load it again."""
    from airflow.utils.db import upgradedb
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    started = time.monotonic()
    providers_configuration_loaded(upgradedb)()
    emit("migrated", seconds=round(time.monotonic() - started, 1))


def run_dags(runs: list[dict[str, Any]]) -> int:
    """``dag.test()`` each of ``runs`` (``dag_id``, optional ``conf``) in order; 0 when all succeeded."""
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.providers_configuration_loader import providers_configuration_loaded

    @providers_configuration_loaded
    def run_one(dag_id: str, conf: dict[str, Any] | None) -> tuple[str, str]:
        dag = get_bagged_dag(bundle_names=None, dag_id=dag_id)
        dag_run = dag.test(run_conf=conf)
        return dag_run.run_id, str(getattr(dag_run.state, "value", dag_run.state))

    for run in runs:
        started, started_at = time.monotonic(), datetime.now(UTC)
        emit("start", dag_id=run["dag_id"])
        run_id, state = run_one(run["dag_id"], run.get("conf"))
        consumed = consume_queued_asset_events(run["dag_id"], started_at) if state == "success" else 0
        seconds = round(time.monotonic() - started, 1)
        emit("end", dag_id=run["dag_id"], run_id=run_id, state=state, seconds=seconds, consumed_events=consumed)
        if state != "success":
            return 1
    return 0


def consume_queued_asset_events(dag_id: str, before: datetime) -> int:
    """Delete the asset events queued for ``dag_id`` before ``before``; return how many.

    An asset event of a producer queues a run of each unpaused consumer (``asset_dag_run_queue``), which
    the scheduler starts as soon as it runs.  The chain runs its consumers itself, right after their
    producers, so these entries are already served: left in the queue, a later ``recomart up`` would
    run transform, train and recommend once more on the same data.  This is what the REST API's
    ``DELETE /dags/{dag_id}/assets/queuedEvents?before=`` does (no api-server runs during the chain).
    """
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        result = session.execute(
            delete(AssetDagRunQueue).where(
                AssetDagRunQueue.target_dag_id == dag_id, AssetDagRunQueue.created_at < before
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


if __name__ == "__main__":
    if "--migrate" in sys.argv[2:]:
        migrate()
    sys.exit(run_dags(json.loads(sys.argv[1])))
