"""Sharded scoring on real Celery workers: 2 workers against 1 on the same shards, and against today's
single task (issue 20's ``sharded_speedup_2_workers`` and ``speedup_vs_single_task``).

    .venv/bin/python -m benchmarks.shard_speedup
    .venv/bin/python -m benchmarks.scale --merge benchmarks/results/shard_speedup.json

A private deployment (:mod:`benchmarks.private_deployment`: database prefix, Feast project, model name,
state folder and free ports of its own, ``RECOMART_EXECUTOR=celery`` with the broker on the configured
Redis in database ``RECOMART_CELERY_REDIS_DB`` (default: the online store's + 1), every broker key under
the deployment's prefix; all removed at the end) builds a generated shop through the whole chain
(:func:`recomart.demo.run_chain`: ``dag.test()`` of the five DAGs), pauses every DAG, starts a real
api-server, scheduler and dag-processor (:func:`recomart.stack.start_airflow`) and unpauses ``recommend``
only, with one worker for the scheduled run that unpausing makes due (a no-op: nothing changed), then
stopped.  Then:

1. ``single_task``: :func:`recomart.recommend.run.generate_recommendations` (all users in one process,
   as the single-task nightly job did, with the marts' digest and the feature store) in a fresh process
   with 2 threads (``OMP``/``OPENBLAS``/``MKL``/``NUMBA_NUM_THREADS=2``); its ``seconds`` (read, load,
   score, stage, index, swap; no interpreter start) and the process's wall time;
2. ``workers_1``: one ``airflow celery worker`` (:mod:`recomart.celery_workers`, one task slot,
   ``OMP``/``OPENBLAS``/``MKL``/``NUMBA_NUM_THREADS=1``), a ``recommend`` run triggered with ``force``;
3. ``workers_2``: that worker stopped, two fresh workers started the same way, the same run again.

All three run with the same Airflow components idling beside them.  For each DAG run: its wall time
(REST ``start_date`` -> ``end_date``) and the shard phase: the first ``rank_shard`` task instance's
start to the last one's end (REST task-instance dates), with each shard task's duration, the most shard
tasks that overlapped in time, and the in-task seconds each shard reported.  Both runs rank the same
shards (``RECOMART_RECOMMEND_SHARDS``, ``--shards``): the ranges ``prepare`` planned are compared, and
the result says so (``shards_same``).

``sharded_speedup_2_workers`` = 1-worker shard phase / 2-worker shard phase; ``speedup_vs_single_task``
= the single task's ``seconds`` / the 2-worker shard phase (the single task also stages the item-side
tables, builds the indexes and swaps, which the sharded run does in ``prepare`` and ``publish``:
``speedup_vs_single_task_whole_run`` sets its process wall time against the 2-worker DAG run's wall time).

Default shop (``--users 100000 --items 20000 --days 14``: the issue's 10M-event shop's users x items, about
1.9M events; 8 shards of 12,500 users).  A shard's cost is a fixed part (a fresh task process, the champion
loaded from MLflow: 2.8 s of the single task's 3.4 s on a 300-user shop) and its ranking, which grows with
users x items: the blend (item-to-item, content, popularity; ``benchmarks.serving_data.fit_hybrid``) ranked
1,500 users x 10,000 items in 0.6 s on one thread, 4.0e-8 s per user-item cell (under ``nice 19``, load
average about 2.5 from other jobs).  12,500 users x 20,000 items is 2.5e8 cells: about 10 s, plus the SVD,
reading the shard's history and writing its rows (at the scale study's 1M shop a shard of about 2,500
users x 2,005 items took 3.7 to 4.6 s, docs/scaling.md: mostly the fixed and per-user parts), so each
shard should rank for about 20 s, long enough that the fixed part does not dominate.  Fourteen days
instead of the study's 75 keep the events (what ingest, transform and training grow with) at about 1.9M,
not the 10M that 100k users make over 75 days.  The result records ``shortest_shard_task_s`` and
``shard_tasks_long_enough`` (>= 20 s) and the ranking strategies (a shop whose candidate does not beat
popularity ranks ``popular_no_model``, which is cheap): when it falls short, rerun with more users.
Run it on a quiet machine and without ``nice``: 2 workers can only beat 1 when 2 cores are free.
Develop with a tiny shop (``--users 300 --items 100 --days 14 --out /tmp/shard_speedup_smoke.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.private_deployment import private_deployment
from benchmarks.results_file import ROOT, run_metadata, write_result
from recomart import celery_workers, processes
from recomart.config import Settings
from recomart.datasets.generator import generate
from recomart.demo import run_chain
from recomart.netcheck import free_port
from recomart.progress import Board
from recomart.stack import airflow_rest, start_airflow, start_catalog_api, stop_processes
from recomart.tools import airflow_migrate, run_tool, tool_env

RESULTS = ROOT / "benchmarks" / "results" / "shard_speedup.json"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
TARGET = 1.6
LONG_ENOUGH_S = 20.0
ACTIVE = ("queued", "running")

# the single task, in a fresh interpreter: prints its result as JSON on its last line
_SINGLE_TASK = """
import json
from recomart.config import settings
from recomart.marts import marts_digest
from recomart.recommend.run import generate_recommendations
from recomart.tasks.common import repeat_purchases_allowed, store_features_at
s = settings()
digest = marts_digest(s.warehouse_url)
result = generate_recommendations(
    s.warehouse_url, tracking_uri=s.mlflow_tracking_uri, model_name=s.model_name, dataset=s.dataset,
    repeat_purchases=repeat_purchases_allowed(s.dataset), marts_digest=digest, log=lambda _: None,
    store_features=lambda service: store_features_at(s, service),
)
print(json.dumps({"generation_id": result.generation_id, "users": result.users, "rows": result.rows,
                  "seconds": result.seconds, "timings": result.timings, "strategies": result.strategy_counts}))
"""


def _log(message: str) -> None:
    print(f"[shard_speedup {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def threads(n: int) -> dict[str, str]:
    """The environment that caps BLAS, OpenMP and numba at ``n`` threads."""
    return dict.fromkeys(THREAD_VARS, str(n))


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in this process's environment while the block runs (what ``tool_env`` passes on)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def shard_phase(task_instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The shard phase of one run from its ``rank_shard`` task instances (REST dicts with ``map_index``,
    ``start_date``, ``end_date``, ``try_number``, ``state``): first start to last end, each task's
    seconds (by map index) and the most tasks that ran at the same time."""
    tis = sorted(task_instances, key=lambda ti: ti["map_index"])
    spans = [(_parse(ti["start_date"]), _parse(ti["end_date"])) for ti in tis]
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    seconds = [round((end - start).total_seconds(), 3) for start, end in spans]
    return {
        "shard_phase_s": round((max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds(), 3),
        "shard_task_s": seconds,
        "shard_task_sum_s": round(sum(seconds), 3),
        "max_concurrent_shards": peak,
        "tries": [int(ti["try_number"]) for ti in tis],
        "states": sorted({str(ti["state"]) for ti in tis}),
    }


def build_shop(s: Settings, args: argparse.Namespace) -> float:
    """Generate the shop and run the chain through it (the live generation ranked once); its seconds."""
    started = time.monotonic()
    summary = generate(s.landing_dir / "generated", users=args.users, items=args.items, days=args.days, seed=args.seed)
    _log(f"generated {summary}; running the chain (dag.test of the five DAGs)")
    airflow_migrate(s)
    start_catalog_api(s)
    run_chain(s)
    return round(time.monotonic() - started, 1)


def single_task(s: Settings) -> dict[str, Any]:
    """Today's single task in a fresh process with 2 threads; its result and the process's wall time."""
    started, load = time.monotonic(), _load()
    done = subprocess.run(
        [sys.executable, "-c", _SINGLE_TASK],
        env={**tool_env(s), **threads(2)},
        capture_output=True,
        text=True,
        check=True,
        cwd=s.project_root,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall_s": round(time.monotonic() - started, 3), "threads": threads(2), "load_avg_start": load}


def _wait(predicate, what: str, timeout_s: float, every_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _runs(client: httpx.Client) -> list[dict[str, Any]]:
    response = client.get("/dags/recommend/dagRuns", params={"order_by": "-start_date", "limit": 50})
    response.raise_for_status()
    return list(response.json()["dag_runs"])


def _settled(client: httpx.Client) -> bool:
    """No recommend run queued or running, and the scheduler has created the run that unpausing made
    due (the next one lies in the future)."""
    dag = client.get("/dags/recommend").json()
    after = dag.get("next_dagrun_run_after")
    due = after is not None and _parse(after) <= datetime.now(UTC)
    return not due and not any(run["state"] in ACTIVE for run in _runs(client))


def unpause_recommend(client: httpx.Client) -> None:
    """Wait for the DAG to be parsed, unpause it, and let the scheduled run it makes due finish (a
    no-op: the live generation has the champion and the marts)."""
    _wait(lambda: client.get("/dags/recommend").status_code == 200, "the recommend DAG to be parsed", 300)
    client.patch("/dags/recommend", json={"is_paused": False}).raise_for_status()
    _wait(lambda: _settled(client), "recommend to settle after unpausing", 600)


def run_recommend(client: httpx.Client) -> dict[str, Any]:
    """Trigger recommend with ``force`` and wait for it; the run, its shard phase and its plan."""
    body = {"logical_date": datetime.now(UTC).isoformat(), "conf": {"force": True}}
    response = client.post("/dags/recommend/dagRuns", json=body)
    response.raise_for_status()
    run_id = response.json()["dag_run_id"]
    path = f"/dags/recommend/dagRuns/{run_id}"
    run = _wait(lambda: (r := client.get(path).json())["state"] not in ACTIVE and r, f"run {run_id}", 4 * 3600, 3)
    if run["state"] != "success":
        raise RuntimeError(f"recommend run {run_id} ended {run['state']}; see the task logs")
    tis = client.get(f"{path}/taskInstances", params={"task_id": "rank_shard", "limit": 1000}).json()
    plan = client.get(f"{path}/taskInstances/prepare/xcomEntries/return_value").json()["value"]
    summary = client.get(f"{path}/taskInstances/publish/xcomEntries/return_value").json()["value"]
    return {
        "dag_run_id": run_id,
        "dag_run_s": round((_parse(run["end_date"]) - _parse(run["start_date"])).total_seconds(), 3),
        **shard_phase(tis["task_instances"]),
        "shard_in_task_s": summary["shard_seconds"],
        "rows": summary["rows"],
        "strategies": summary["strategies"],
        "plan": [{key: shard[key] for key in ("index", "first_user", "last_user", "users")} for shard in plan],
    }


@contextmanager
def fresh_workers(s: Settings, workers: int) -> Iterator[dict[str, str | None]]:
    """``workers`` fresh Celery workers (one slot, one thread each) and Flower while the block runs;
    yields the thread variables of the environment they were started with.  (``/proc/<pid>/environ``
    cannot confirm them: the workers' process titles overwrite that memory.)"""
    log_from: dict[str, int] = {}
    with _environ(threads(1)):
        started_with = {key: tool_env(s).get(key) for key in THREAD_VARS}
        checks = celery_workers.start(s, workers, log_from)
    names = [*celery_workers.started_workers(s), celery_workers.FLOWER_PROCESS]
    try:
        with Board() as board:
            processes.wait_healthy(s, checks, board, log_from)
        yield started_with
    finally:
        stop_processes(s, names)


def sharded(s: Settings, client: httpx.Client, workers: int) -> dict[str, Any]:
    """One forced recommend run on ``workers`` fresh workers, with their thread settings and the load."""
    with fresh_workers(s, workers) as started_with:
        result = {"workers": workers, "worker_env": started_with, "load_avg_start": _load()}
        result.update(run_recommend(client))
    return {**result, "load_avg_end": _load()}


def summarise(single: dict[str, Any], one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """The speedups, whether both runs ranked the same shards, and whether the shard tasks were long
    enough for Airflow's per-task overhead not to dominate."""
    shortest = min(one["shard_task_s"] + two["shard_task_s"])
    speedup = round(one["shard_phase_s"] / two["shard_phase_s"], 3)
    command = run_metadata()["command"]
    return {
        "sharded_speedup_2_workers": speedup,
        "sharded_speedup_2_workers_source": f"{command}: the recommend DAG's rank_shard phase (first start to "
        f"last end) on 1 Celery worker over the same on 2 (one slot and one thread each), {len(one['plan'])} "
        "shards, one run; see benchmarks/results/shard_speedup.json",
        "speedup_vs_single_task": round(single["seconds"] / two["shard_phase_s"], 3),
        "speedup_vs_single_task_source": f"{command}: generate_recommendations in one process with 2 threads "
        "(its seconds) over the 2-worker rank_shard phase; see benchmarks/results/shard_speedup.json",
        "speedup_vs_single_task_whole_run": round(single["wall_s"] / two["dag_run_s"], 3),
        "target_sharded_speedup": TARGET,
        "meets_target": speedup >= TARGET,
        "shards_same": one["plan"] == two["plan"],
        "shortest_shard_task_s": shortest,
        "shard_tasks_long_enough": shortest >= LONG_ENOUGH_S,
    }


def measure(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Build the shop, then the single task, 1 worker and 2 workers beside the same Airflow components."""
    build_s = build_shop(s, args)
    _log(f"shop built in {build_s}s; pausing its DAGs, starting the api-server, scheduler and dag-processor")
    run_tool(["airflow", "dags", "pause", "--treat-dag-id-as-regex", "--yes", ".*"], s)  # dag.test unpaused them
    try:
        start_airflow(s, COMPONENTS, paused_at_creation=True)
        with airflow_rest(s) as client:
            with fresh_workers(s, 1):  # the scheduled run that unpausing makes due needs a worker
                unpause_recommend(client)
            _log("single task (generate_recommendations, 2 threads, fresh process)")
            single = single_task(s)
            _log(f"single task: {single['seconds']}s ({single['wall_s']}s process); 1 worker")
            one = sharded(s, client, 1)
            _log(f"1 worker: shard phase {one['shard_phase_s']}s, DAG run {one['dag_run_s']}s; 2 workers")
            two = sharded(s, client, 2)
            _log(f"2 workers: shard phase {two['shard_phase_s']}s, DAG run {two['dag_run_s']}s")
    finally:
        stop_processes(s, ["catalog-api", *(f"airflow-{c}" for c in COMPONENTS)])
    return {"build_s": build_s, "single_task": single, "workers_1": one, "workers_2": two}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=42, help="the generator's seed (the demo's default: 42)")
    parser.add_argument("--shards", type=int, default=8, help="RECOMART_RECOMMEND_SHARDS of both runs (default 8)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"write the JSON here (default {RESULTS})")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM still stops and removes the deployment
    environ = {
        "RECOMART_DATASET": "generated",
        "RECOMART_SEED": str(args.seed),
        "RECOMART_EXECUTOR": "celery",
        "RECOMART_CELERY_CONCURRENCY": "1",
        "RECOMART_RECOMMEND_SHARDS": str(args.shards),
        **{f"RECOMART_{name}_PORT": str(free_port()) for name in ("CATALOG", "AIRFLOW", "MLFLOW", "API", "FLOWER")},
    }
    load = _load()
    with private_deployment("shardspeed", **environ) as s:
        _log(f"deployment {s.db_prefix} (state {s.state_dir}); broker {s.celery_broker_url} prefix {s.db_prefix}:")
        figures = measure(s, args)
        executor = s.airflow_executor
    shop = {"users": args.users, "items": args.items, "days": args.days, "seed": args.seed, "shards": args.shards}
    result = {
        **summarise(figures["single_task"], figures["workers_1"], figures["workers_2"]),
        "shop": shop,
        "executor": executor,
        **figures,
        "load_avg_start": load,
        "load_avg_end": _load(),
        **run_metadata(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
