"""Cost growth of the whole chain with the shop's size: ``.venv/bin/python -m benchmarks.scale 1day 100k 1M``.

Each size (``1day``, or a target number of events such as ``300k`` or ``3M``) is a generated shop with
``users = events / (days x 1.33)`` and ``items = users / 5`` (100k users x 20k items at 10M events
over the default 75 days); ``1day`` is one day of the 30k shop (``--one-day-of``), whose stage times
are the fixed costs (the shortest of ``1day``, ``1day-2``, ...: another job's load only adds; any size
repeated, ``30k-2``, counts once in the fits, with its shortest time, for the same reason).  For
each size a deployment of its own (database prefix ``recomart_scale_<hex>``, a state folder with its
Airflow home and landing files, a catalog API on a free port) on the servers of ``RECOMART_PG_URL`` /
``RECOMART_REDIS_URL`` (default: the checkout's) runs the demo's chain through Airflow (``ingest_catalog``,
``ingest_events``, ``transform``, ``train``, ``recommend``), and is dropped afterwards.  By default
(``--runner scheduler``) each run is triggered over the REST API on the deployment's own api-server,
scheduler and dag-processor (:mod:`benchmarks.scale_scheduler`): tasks run as they do under
``./recomart up``, mapped shards and parallel branches side by side; ``--runner dag.test`` runs them
one at a time in one process, as the demo does (:mod:`recomart.airflow_runner`).  With ``--daily`` the
largest size keeps its last day back, then loads it and runs ``transform`` again: the incremental daily
run, against the first (full) one.

Per stage (ingest = ``ingest_catalog`` + ``ingest_events``): the wall seconds of its DAG runs, the peak
RSS of the largest process and of the whole process tree (the runner, or the Airflow components and
their tasks; psutil, sampled every 0.2 s), the warehouse's size on disk after it
(``pg_database_size``) and the load average at its start and end.  Per size, ``speed_probe``: a fixed
CPU workload timed before the size's processes start and after they end (:mod:`benchmarks.speed_probe`),
so that two runs can be compared by the machine's speed too; ``published``: the generation ``recommend``
published, with its model version and users per strategy (ranker or blend).

Results are merged by size into ``benchmarks/results/scale.json`` (``--fresh`` starts over), then
each stage's exponent is fitted (:mod:`benchmarks.scale_fit`) and ``scale.png`` drawn; with no size
given only the fit and the plot are redone.  ``--merge FILE`` takes ``speedup_vs_single_task``,
``sharded_speedup_2_workers`` or ``incremental_daily_ratio`` from another benchmark's JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg

from benchmarks.results_file import ROOT, run_metadata
from benchmarks.scale_fit import STAGES, GrowthFit, fit_growth, plot_growth
from benchmarks.speed_probe import probe
from recomart.airflow_runner import MARK
from recomart.config import Settings, load_settings, settings
from recomart.netcheck import free_port
from recomart.tools import tool_env

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
PLOT = ROOT / "benchmarks" / "results" / "scale.png"
CHAIN = ("ingest_catalog", "ingest_events", "transform", "train", "recommend")
STAGE_OF = {"ingest_catalog": "ingest", "ingest_events": "ingest"}
EVENTS_PER_USER_DAY = 1.33  # the generator's mean at its default activity (1.99M / (5000 users x 300 days))
MERGEABLE = ("speedup_vs_single_task", "sharded_speedup_2_workers", "incremental_daily_ratio")
EXTRAPOLATE_TO = 10_000_000
#: the issue's targets at 10M events on the reference machine
TOTAL_S_AT_10M_MAX = 1800
STAGE_S_AT_10M_MAX = {"ingest": 180, "transform": 420, "train": 720, "recommend": 480}
PEAK_RSS_MB_MAX = 8000
SAMPLE_S = 0.2
LOADS = ("load_avg_start", "load_avg_end")
CPU_SAMPLE_S = 1.0
#: how the chain's DAG runs are run (``--runner``), as the result file's ``executor_note`` explains them
RUNNERS = {
    "scheduler": "each DAG run triggered over the REST API on the deployment's own Airflow api-server, "
    "scheduler and dag-processor, the executor named here (tasks in processes of their own, up to "
    "AIRFLOW__CORE__PARALLELISM=4 at once: mapped shards and the train DAG's branches in parallel)",
    "dag.test": "the demo's runner: dag.test() of each DAG in one recomart.airflow_runner process, which "
    "runs the tasks one at a time in that process (the configured executor is not asked)",
}
_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")


def _log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    """``"300k"`` -> 300000, ``"3M"`` -> 3000000, ``"1day"`` -> 0 (the 1-day shop); a suffix ``-2``,
    ``-3``, ... repeats a size (``1day-2``, ``30k-2``: the same seeded shop measured again)."""
    text = text.strip().lower().split("-")[0]
    if text == "1day":
        return 0
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def shop_shape(target_events: int, days: int) -> tuple[int, int, int]:
    """``(users, items, days)`` of a generated shop of about ``target_events`` events over ``days``."""
    users = max(100, math.ceil(target_events / (days * EVENTS_PER_USER_DAY)))
    return users, max(50, users // 5), days


def size_settings(base: Settings, work: Path, users: int, items: int, days: int) -> Settings:
    """A deployment of its own on ``base``'s servers for one shop."""
    tag = f"recomart_scale_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "RECOMART_PG_URL": base.pg_server_url,
        "RECOMART_REDIS_URL": base.redis_url,
        "RECOMART_STATE_DIR": str(work),
        "RECOMART_LANDING_DIR": str(work / "landing"),
        "RECOMART_DATASET": "generated",
        "RECOMART_DB_PREFIX": tag,
        "RECOMART_FEAST_PROJECT": tag,
        "RECOMART_MODEL_NAME": tag,
        "RECOMART_USERS": str(users),
        "RECOMART_ITEMS": str(items),
        "RECOMART_DAYS": str(days),
        "RECOMART_CATALOG_PORT": str(free_port()),
        "RECOMART_AIRFLOW_PORT": str(free_port()),
    }
    return load_settings(env)


class ChainMonitor:
    """Samples, every :data:`SAMPLE_S`, the runner's process tree: ``peaks[dag] = (largest process, whole
    tree)`` RSS bytes; and, every :data:`CPU_SAMPLE_S`, the CPU seconds (user + system) of this process's
    children (the runner, the tasks' tools, the catalog API) and of the Postgres backends of the
    deployment's databases (``postgres: ... <prefix>...`` processes): ``cpu[dag]`` seconds.  CPU time
    hardly depends on other jobs' load, wall time does; a process's last interval before it exits is
    lost, and Redis's share (a shared server) is not counted."""

    def __init__(self, pid: int, db_prefix: str) -> None:
        self.root = psutil.Process(pid)
        self.db_prefix = db_prefix
        self.dag: str | None = None
        self.peaks: dict[str, tuple[int, int]] = {}
        self.cpu: dict[str, float] = {}
        self._seen: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ChainMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        ticks = 0
        while not self._stop.wait(SAMPLE_S):
            ticks += 1
            self._sample_rss()
            if ticks % round(CPU_SAMPLE_S / SAMPLE_S) == 0:
                self._sample_cpu()

    def _sample_rss(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = []
        for proc in procs:
            try:
                rss.append(proc.memory_info().rss)
            except psutil.Error:
                continue
        dag = self.dag
        if dag and rss:
            largest, tree = self.peaks.get(dag, (0, 0))
            self.peaks[dag] = (max(largest, max(rss)), max(tree, sum(rss)))

    def _watched(self) -> list[psutil.Process]:
        backends = [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if any(self.db_prefix in part for part in (proc.info["cmdline"] or [])[:1])
        ]
        return [*psutil.Process().children(recursive=True), *backends]

    def _sample_cpu(self) -> None:
        spent = 0.0
        for proc in self._watched():
            try:
                key, times = (proc.pid, proc.create_time()), proc.cpu_times()
            except psutil.Error:
                continue
            total = times.user + times.system
            spent += total - self._seen.get(key, 0.0)
            self._seen[key] = total
        dag = self.dag or "between"
        self.cpu[dag] = self.cpu.get(dag, 0.0) + spent


def database_mb(s: Settings, name: str) -> float:
    """``pg_database_size`` of ``name`` in MB."""
    with psycopg.connect(s.pg_url("postgres")) as conn:
        row = conn.execute("select pg_database_size(%s)", (name,)).fetchone()
    return round((row[0] if row else 0) / 1e6, 1)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _on_event(s: Settings, event: dict[str, Any], monitor: ChainMonitor, runs: dict[str, dict]) -> None:
    """Record a runner event: a DAG's start (load) or end (its run, load, warehouse size)."""
    if event["event"] == "start":  # a DAG's second run in the chain is the daily one: "<dag>.daily"
        key = event["dag_id"] if event["dag_id"] not in runs else f"{event['dag_id']}.daily"
        monitor.dag = key
        runs[key] = {"load_avg_start": _load(), "tasks": {}}
    elif event["event"] == "end" and (key := monitor.dag):
        monitor.dag = None
        largest, tree = monitor.peaks.get(key, (0, 0))
        runs[key].update(
            {k: event.get(k) for k in ("run_id", "state", "seconds")},
            load_avg_end=_load(),
            warehouse_mb=database_mb(s, s.warehouse_db),
            peak_rss_mb=round(largest / 1e6, 1),
            peak_tree_rss_mb=round(tree / 1e6, 1),
            cpu_s=round(monitor.cpu.get(key, 0.0), 1),
        )


def _add_task(tasks: dict[str, float], task_id: str, started: float) -> None:
    """Add a task's seconds to ``tasks`` (a mapped task's instances run one after another: their sum)."""
    tasks[task_id] = round(tasks.get(task_id, 0.0) + time.monotonic() - started, 1)


def run_chain(s: Settings, chain: list[dict], log_path: Path) -> tuple[dict[str, dict], float]:
    """``chain``'s DAG runs (``{"dag_id", "conf"}``) in one runner process (migrating Airflow's database
    first); returns the runs by DAG (``<dag>.daily`` for a DAG's second run) and the runner's wall
    seconds.  Raises RuntimeError naming the log when a run fails."""
    command = [sys.executable, "-m", "recomart.airflow_runner", json.dumps(chain), "--migrate"]
    runs: dict[str, dict] = {}
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=s.project_root, env=tool_env(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    task, task_started = "", 0.0
    with ChainMonitor(proc.pid, s.db_prefix) as monitor, log_path.open("w") as log:
        for line in proc.stdout:
            log.write(line)
            if line.startswith(MARK):
                event = json.loads(line[len(MARK) :])
                if task and event["event"] == "end" and monitor.dag:  # the DAG's last task ends with it
                    _add_task(runs[monitor.dag]["tasks"], task, task_started)
                    task = ""
                _on_event(s, event, monitor, runs)
                if event["event"] != "migrated":
                    _log(f"{event['dag_id']}: {event['event']} {event.get('seconds', '')}")
            elif match := _TASK_START.search(line):
                if task and monitor.dag:
                    _add_task(runs[monitor.dag]["tasks"], task, task_started)
                task, task_started = match.group(1), time.monotonic()
    if proc.wait() != 0 or len(runs) != len(chain) or any(run.get("state") != "success" for run in runs.values()):
        raise RuntimeError(f"the chain stopped (exit {proc.returncode}); Airflow's output: {log_path}")
    return runs, round(time.monotonic() - started, 1)


def run_chain_scheduled(s: Settings, chain: list[dict]) -> tuple[dict[str, dict], float]:
    """``chain``'s DAG runs triggered one after another on the deployment's own Airflow scheduler
    (:mod:`benchmarks.scale_scheduler`); returns what :func:`run_chain` does.  Raises RuntimeError
    naming the run and the logs when a run fails."""
    from benchmarks import scale_scheduler
    from recomart import processes
    from recomart.stack import airflow_rest, stop_airflow

    runs: dict[str, dict] = {}
    started = time.monotonic()
    scale_scheduler.start_components(s)
    try:
        with airflow_rest(s) as client, ChainMonitor(os.getpid(), s.db_prefix) as monitor:
            scale_scheduler.wait_parsed(client, {run["dag_id"] for run in chain})
            for run in chain:
                _on_event(s, {"event": "start", "dag_id": run["dag_id"]}, monitor, runs)
                key, done = monitor.dag or "", scale_scheduler.run_on_scheduler(client, run["dag_id"], run["conf"])
                runs[key]["tasks"] = done.pop("tasks")
                _on_event(s, {"event": "end", **done}, monitor, runs)
                _log(f"{run['dag_id']}: {done['state']} {done['seconds']}s ({done['run_id']})")
                if done["state"] != "success":
                    logs = ", ".join(str(processes.logfile(s, f"airflow-{c}")) for c in scale_scheduler.COMPONENTS)
                    raise RuntimeError(
                        f"{run['dag_id']} run {done['run_id']} {done['state']}; task logs under "
                        f"{s.airflow_home / 'logs'}, the components' in {logs}"
                    )
    finally:
        stop_airflow(s, scale_scheduler.COMPONENTS)
    return runs, round(time.monotonic() - started, 1)


def stage_figures(runs: dict[str, dict]) -> dict[str, dict]:
    """Per stage: wall seconds, peaks, warehouse size after it, load at its start and end, its DAG runs."""
    stages: dict[str, dict] = {}
    for dag_id in CHAIN:
        run = runs[dag_id]
        stage = stages.setdefault(
            STAGE_OF.get(dag_id, dag_id),
            {"wall_s": 0.0, "peak_rss_mb": 0.0, "peak_tree_rss_mb": 0.0, "load_avg_start": run["load_avg_start"]},
        )
        stage["wall_s"] = round(stage["wall_s"] + run["seconds"], 1)
        stage["cpu_s"] = round(stage.get("cpu_s", 0.0) + run["cpu_s"], 1)
        stage["peak_rss_mb"] = max(stage["peak_rss_mb"], run["peak_rss_mb"])
        stage["peak_tree_rss_mb"] = max(stage["peak_tree_rss_mb"], run["peak_tree_rss_mb"])
        stage["load_avg_end"], stage["warehouse_mb_after"] = run["load_avg_end"], run["warehouse_mb"]
        stage.setdefault("tasks_s", {}).update({f"{dag_id}.{t}": sec for t, sec in run["tasks"].items()})
    return stages


def train_steps(s: Settings) -> dict[str, float]:
    """Seconds of each step of the size's last training round (its MLflow run's ``time_*`` metrics:
    prepare, tuning, blend fit, evaluation on the test window, the served fit, the ranker stage), so the
    train stage's growth can be split by step; empty when no round was recorded."""
    import psycopg
    from mlflow.tracking import MlflowClient

    with psycopg.connect(s.warehouse_url) as conn:
        row = conn.execute("select run_id from ops.model_promotions order by decided_at desc limit 1").fetchone()
    if row is None or row[0] is None:
        return {}
    metrics = MlflowClient(s.mlflow_tracking_uri).get_run(row[0]).data.metrics
    return {
        key.removeprefix("time_"): round(value, 1) for key, value in sorted(metrics.items()) if key.startswith("time_")
    }


def published_generation(s: Settings) -> dict[str, Any] | None:
    """The live recommendation generation the size's ``recommend`` published: ``generation_id``,
    ``model_version`` and ``strategy_summary`` (users per strategy, e.g. ``{"ranker": 96129, ...}``), so a
    reader can tell which strategy ``recommend``'s time belongs to; None when none is live."""
    with psycopg.connect(s.warehouse_url) as conn:
        row = conn.execute(
            "select generation_id, model_version, strategy_summary from reco.generations where is_live"
        ).fetchone()
    if row is None:
        return None
    return {"generation_id": int(row[0]), "model_version": row[1], "strategy_summary": dict(row[2] or {})}


def drop_size(s: Settings, work: Path) -> None:
    """Drop the size's databases, its Feast project's and its prefix's Redis keys and its state folder."""
    import redis

    from benchmarks.feast_lookup import drop_scratch

    drop_scratch(s)
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"{s.db_prefix}:*", count=1000):
        client.delete(key)
    shutil.rmtree(work, ignore_errors=True)


def chain_for(s: Settings, daily: bool) -> tuple[list[dict], int]:
    """The demo's five DAG runs over the landing days; with ``daily`` the last day is left out of them and
    loaded and transformed by a second ``ingest_events`` and ``transform`` run.  Returns the runs and the
    events of the day left out (0 without ``daily``)."""
    from recomart.datasets.landing import landing_days
    from recomart.demo import chain_runs

    chain = chain_runs(s)
    if not daily:
        return chain, 0
    last = landing_days(s)[-1]
    chain[1]["conf"]["end_day"] = (last - timedelta(days=1)).isoformat()
    with (s.landing_dir / "generated" / "events" / f"{last.isoformat()}.csv").open() as day_file:
        day_events = sum(1 for _ in day_file) - 1  # the header
    window = {"start_day": last.isoformat(), "end_day": last.isoformat()}
    return [*chain, {"dag_id": "ingest_events", "conf": window}, {"dag_id": "transform", "conf": None}], day_events


def daily_figures(runs: dict[str, dict], day_events: int) -> dict[str, Any]:
    """The daily load and transform against the chain's (full) transform of the same deployment."""
    full, daily = runs["transform"], runs["transform.daily"]
    dbt_full, dbt_daily = full["tasks"].get("dbt_build"), daily["tasks"].get("dbt_build")
    return {
        "events": day_events,
        "ingest_events_s": runs["ingest_events.daily"]["seconds"],
        "transform_s": daily["seconds"],
        "transform_over_full": round(daily["seconds"] / full["seconds"], 3),
        "cpu_s": daily["cpu_s"],
        "cpu_over_full": round(daily["cpu_s"] / full["cpu_s"], 3) if full["cpu_s"] else None,
        "dbt_build_s": dbt_daily,
        "dbt_build_over_full": round(dbt_daily / dbt_full, 3) if dbt_full and dbt_daily else None,
        "tasks_s": daily["tasks"],
        "load_avg": [daily["load_avg_start"], daily["load_avg_end"]],
        "dag_run_ids": {key: runs[key]["run_id"] for key in ("ingest_events.daily", "transform.daily")},
    }


def measure_size(
    base: Settings, label: str, shape: tuple[int, int, int], daily: bool, keep: bool, runner: str = "scheduler"
) -> dict:
    """Generate one shop (``shape``: users, items, days; one day more with ``daily``), run the chain on it
    in a deployment of its own with ``runner`` (one of :data:`RUNNERS`), drop that deployment."""
    from recomart import processes, services
    from recomart.datasets.generator import generate
    from recomart.stack import start_catalog_api

    users, items, days = shape
    work = Path(tempfile.mkdtemp(prefix=f"recomart-scale-{label}-"))
    s = size_settings(base, work, users, items, days + int(daily))
    _log(f"{label}: {users:,} users, {items:,} items, {days} days in {s.db_prefix} ({work})")
    try:
        services.ensure_services(s)
        speed = probe()  # before the size's processes start: the machine's speed, for comparing runs
        started = time.monotonic()
        summary = generate(s.landing_dir / "generated", users=users, items=items, days=s.generator_days, seed=s.seed)
        generate_s = round(time.monotonic() - started, 1)
        _log(f"{label}: {summary.events:,} events generated in {generate_s}s")
        chain, day_events = chain_for(s, daily)
        start_catalog_api(s)
        try:
            if runner == "scheduler":
                runs, runner_s = run_chain_scheduled(s, chain)
            else:
                runs, runner_s = run_chain(s, chain, work / "chain.log")
        finally:
            processes.stop(s, "catalog-api")
        stages = stage_figures(runs)
        stages["train"]["steps_s"] = train_steps(s)
        published = published_generation(s)
        return {
            "label": label,
            "runner": runner,
            "events": summary.events - day_events,
            "users": users,
            "items": items,
            "days": days,
            "total_s": round(sum(stage["wall_s"] for stage in stages.values()), 1),
            "runner_s": runner_s,
            "generate_s": generate_s,
            "stages": stages,
            "daily": daily_figures(runs, day_events) if daily else None,
            "published": published,
            "dag_run_ids": {key: run["run_id"] for key, run in runs.items()},
            "databases_mb": {name: database_mb(s, name) for name in s.all_databases},
            "measured_at": run_metadata()["measured_at"],
            "speed_probe": {"before": speed, "after": probe()},
        }
    finally:
        if not keep:
            drop_size(s, work)


def is_fixed_cost(size: dict) -> bool:
    return bool(size["label"].startswith("1day"))


def shortest_per_shop(sizes: list[dict], value: Callable[[dict], float]) -> tuple[list[int], list[float]]:
    """``(events, values)``, one point per distinct shop in order of events: the shortest ``value`` of
    the shop's runs (a size and its repeats, ``30k``, ``30k-2``, ..., measure the same seeded shop; the
    load of other jobs only adds to a time, as for the fixed costs)."""
    shortest: dict[int, float] = {}
    for size in sizes:
        shortest[size["events"]] = min(shortest.get(size["events"], math.inf), value(size))
    events = sorted(shortest)
    return events, [shortest[n] for n in events]


def fits(sizes: list[dict], metric: str = "wall_s") -> dict[str, GrowthFit] | None:
    """Each stage's growth fit of ``metric`` (``wall_s`` or ``cpu_s``) over the sizes that measured it,
    other than the 1-day shops, one point per shop (:func:`shortest_per_shop`); a stage's fixed cost is
    its shortest value over the 1-day shops.  None without one."""
    sizes = [size for size in sizes if all(metric in size["stages"][stage] for stage in STAGES)]
    one_day = [size for size in sizes if is_fixed_cost(size)]
    grown = [size for size in sizes if not is_fixed_cost(size)]
    if not one_day:
        return None
    out = {}
    for stage in STAGES:
        events, seconds = shortest_per_shop(grown, lambda size, stage=stage: size["stages"][stage][metric])
        out[stage] = fit_growth(events, seconds, min(size["stages"][stage][metric] for size in one_day))
    return out


def fit_figures(sizes: list[dict]) -> dict[str, Any]:
    """``exponents``, ``r2``, ``fixed_s``, ``fit_points`` and the clearly labelled 10M extrapolation."""
    stage_fits = fits(sizes)
    if stage_fits is None:
        return {"exponents": None, "r2": None, "fit_note": "no 1day size measured: no fixed cost to subtract"}
    figures = {
        "exponents": {stage: fit.exponent for stage, fit in stage_fits.items()},
        "r2": {stage: fit.r2 for stage, fit in stage_fits.items()},
        "fixed_s": {stage: fit.fixed_s for stage, fit in stage_fits.items()},
        "fit_points": {stage: {"used": fit.points, "dropped": fit.dropped} for stage, fit in stage_fits.items()},
        "cpu": cpu_fit_figures(sizes),
        "train_steps": train_step_fits(sizes),
    }
    if not reaches_10m(sizes):
        predicted = {stage: stage_fits[stage].predict(EXTRAPOLATE_TO) for stage in STAGES}
        largest = max(size["events"] for size in sizes)
        figures["extrapolated_10m"] = {
            "note": f"EXTRAPOLATION, not a measurement: fixed + a * events**k at {EXTRAPOLATE_TO:,} events from "
            f"fits whose largest measured shop has {largest:,} events",
            "stages_s": {k: None if v is None else round(v, 1) for k, v in predicted.items()},
            "total_s": None if None in predicted.values() else round(sum(v for v in predicted.values() if v), 1),
        }
    return figures


def reaches_10m(sizes: list[dict]) -> bool:
    """Whether a measured shop has about 10M events (at least 90 % of :data:`EXTRAPOLATE_TO`)."""
    return any(size["events"] >= 0.9 * EXTRAPOLATE_TO for size in sizes)


def at_10m(sizes: list[dict]) -> dict[str, Any]:
    """The largest measured shop against the 10M targets (``not_run`` when no shop reaches about 10M)."""
    if not reaches_10m(sizes):
        return {
            "not_run": "10M events: not run (the machine is shared and the time available did not allow it); "
            "see extrapolated_10m"
        }
    size = max(sizes, key=lambda s: s["events"])
    stages = {stage: size["stages"][stage]["wall_s"] for stage in STAGES}
    peak = max(size["stages"][stage]["peak_rss_mb"] for stage in STAGES)
    return {
        "at_10m": {
            "label": size["label"],
            "events": size["events"],
            "total_s": size["total_s"],
            "total_met": size["total_s"] <= TOTAL_S_AT_10M_MAX,
            "stages_s": stages,
            "stages_met": {stage: stages[stage] <= STAGE_S_AT_10M_MAX[stage] for stage in STAGES},
            "peak_rss_mb": peak,
            "peak_rss_met": peak <= PEAK_RSS_MB_MAX,
        }
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def cpu_fit_figures(sizes: list[dict]) -> dict[str, Any] | None:
    """The same fit on each stage's CPU seconds (sizes measured with them only), which other jobs' load
    hardly changes; None before any."""
    cpu_fits = fits(sizes, "cpu_s")
    if cpu_fits is None:
        return None
    figures = {
        "note": "CPU seconds (user + system) of the chain's processes and of the deployment's Postgres "
        "backends; Redis (a shared server) not counted",
        "exponents": {stage: fit.exponent for stage, fit in cpu_fits.items()},
        "r2": {stage: fit.r2 for stage, fit in cpu_fits.items()},
        "fixed_s": {stage: fit.fixed_s for stage, fit in cpu_fits.items()},
        "fit_points": {stage: {"used": fit.points, "dropped": fit.dropped} for stage, fit in cpu_fits.items()},
    }
    if not reaches_10m(sizes):
        figures["extrapolated_10m_cpu_s"] = {
            stage: _rounded(fit.predict(EXTRAPOLATE_TO)) for stage, fit in cpu_fits.items()
        }
    return figures


def train_step_fits(sizes: list[dict]) -> dict[str, Any] | None:
    """The same growth fit on each step of the train stage (``stages.train.steps_s``, sizes measured with
    them only), to tell which step makes the stage grow faster than the data; None before any."""
    sizes = [size for size in sizes if size["stages"]["train"].get("steps_s")]
    one_day = [size for size in sizes if is_fixed_cost(size)]
    grown = sorted((size for size in sizes if not is_fixed_cost(size)), key=lambda size: size["events"])
    if not one_day or not grown:
        return None
    steps = [step for step in grown[-1]["stages"]["train"]["steps_s"] if step != "total_s"]
    step_fits = {}
    for step in steps:
        events, seconds = shortest_per_shop(
            grown, lambda size, step=step: size["stages"]["train"]["steps_s"].get(step, 0.0)
        )
        fixed = min(size["stages"]["train"]["steps_s"].get(step, 0.0) for size in one_day)
        step_fits[step] = fit_growth(events, seconds, fixed)
    return {
        "note": "the train stage's steps (its MLflow run's time_* metrics), fitted as the stages are",
        "exponents": {step: fit.exponent for step, fit in step_fits.items()},
        "r2": {step: fit.r2 for step, fit in step_fits.items()},
        "largest_s": grown[-1]["stages"]["train"]["steps_s"],
    }


def measured_here(sizes: list[dict]) -> dict[str, Any]:
    """``incremental_daily_ratio`` when the largest size ran ``--daily``: its daily transform's wall time
    over the chain's full one, both through Airflow in the same deployment."""
    largest = max(sizes, key=lambda size: size["events"])
    if not largest.get("daily"):
        return {}
    return {
        "incremental_daily_ratio": largest["daily"]["transform_over_full"],
        "incremental_daily_ratio_source": f"benchmarks.scale --daily at {largest['label']} "
        f"({largest['events']:,} events): the transform DAG's run on one more day over its first run; "
        "see sizes[].daily",
    }


def merged_extras(previous: dict, merge_file: Path | None, sizes: list[dict]) -> dict[str, Any]:
    """The keys measured by other benchmarks: from ``merge_file``, else measured here (the daily ratio),
    else kept from ``previous``, else null with a reason."""
    given = {**measured_here(sizes), **(json.loads(merge_file.read_text()) if merge_file else {})}
    reasons = {
        "speedup_vs_single_task": "not measured in this run",
        "sharded_speedup_2_workers": "not measured in this run",
        "incremental_daily_ratio": "not measured: the largest size ran without --daily",
    }
    extras: dict[str, Any] = {}
    for key in MERGEABLE:
        if key in given:
            extras[key] = given[key]
            extras[f"{key}_source"] = given.get(f"{key}_source", str(merge_file))
        elif previous.get(key) is not None:
            extras[key], extras[f"{key}_source"] = previous[key], previous.get(f"{key}_source")
        else:
            extras[key], extras[f"{key}_source"] = None, reasons[key]
    return extras


def executor_note(sizes: list[dict]) -> str:
    """Which sizes ran with which runner (:data:`RUNNERS`; sizes measured before ``runner`` was recorded
    ran with ``dag.test``), and what each runner does."""
    by_runner: dict[str, list[str]] = {}
    for size in sizes:
        by_runner.setdefault(size.get("runner", "dag.test"), []).append(size["label"])
    return "; ".join(f"{runner} ({', '.join(labels)}): {RUNNERS[runner]}" for runner, labels in by_runner.items())


PROVENANCE = ("machine", "load_average", "git_commit", "measured_at", "command")


def provenance(previous: dict, meta: dict[str, Any], measured: bool, merge_file: Path | None) -> dict[str, Any]:
    """Where the study's figures come from: this run's ``machine``, ``load_average``, ``git_commit``,
    ``measured_at`` and ``command`` when it measured a size; a merge-only run (no size given, ``--merge``) keeps the
    study's and appends itself to ``merges`` (commit, time, file), so the file still names the run that
    measured the sizes."""
    merges = list(previous.get("merges", []))
    if measured or not all(key in previous for key in PROVENANCE):
        return {**{key: meta[key] for key in PROVENANCE}, "merges": merges}
    if merge_file is not None:
        merges.append({"file": str(merge_file), "git_commit": meta["git_commit"], "at": meta["measured_at"]})
    return {**{key: previous[key] for key in PROVENANCE}, "merges": merges}


def assemble(
    sizes: list[dict], previous: dict, merge_file: Path | None, executor: str, measured: bool = True
) -> dict[str, Any]:
    """The result file's content from every size; ``measured``: whether this run measured any of them
    (else the study's provenance is kept, see :func:`provenance`)."""
    sizes = sorted(sizes, key=lambda size: size["events"])
    meta = run_metadata()
    return {
        "sizes": sizes,
        **fit_figures(sizes),
        "executor": executor,
        "executor_note": executor_note(sizes),
        "dag_run_ids": {size["label"]: size["dag_run_ids"] for size in sizes},
        **merged_extras(previous, merge_file, sizes),
        **at_10m(sizes),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        **provenance(previous, meta, measured, merge_file),
        "commands": list(dict.fromkeys([*previous.get("commands", []), meta["command"]])),
        "targets": {
            "exponent_max": 1.15,
            "peak_rss_mb_max": PEAK_RSS_MB_MAX,
            "total_s_at_10m_max": TOTAL_S_AT_10M_MAX,
            "stage_s_at_10m_max": STAGE_S_AT_10M_MAX,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", help="1day, or target events such as 100k, 300k, 1M, 3M")
    parser.add_argument("--days", type=int, default=75, help="days of history of every size but 1day")
    parser.add_argument("--one-day-of", default="30k", help="the size whose users and items the 1-day shop has")
    parser.add_argument("--fresh", action="store_true", help="drop the sizes already in the result file")
    parser.add_argument("--merge", type=Path, help=f"a JSON file with any of {', '.join(MERGEABLE)}")
    parser.add_argument("--keep", action="store_true", help="keep each size's databases and state folder")
    parser.add_argument(
        "--daily",
        action="store_true",
        help="at the largest size: load one more day and run transform again (the incremental daily run)",
    )
    parser.add_argument(
        "--runner",
        choices=tuple(RUNNERS),
        default="scheduler",
        help="scheduler: trigger the runs on Airflow's own scheduler (default); dag.test: the demo's runner",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    targets = {text.lower(): parse_size(text) for text in args.sizes}
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    sizes = {} if args.fresh else {size["label"]: size for size in previous.get("sizes", [])}
    if not targets and not sizes:
        parser.error(f"no size given and none measured in {args.out}")
    one_day = (*shop_shape(parse_size(args.one_day_of), args.days)[:2], 1)
    base = settings()
    for label, target in targets.items():
        shape = shop_shape(target, args.days) if target else one_day
        daily = args.daily and target == max(targets.values())
        sizes[label] = measure_size(base, label, shape, daily, args.keep, args.runner)
        result = assemble(list(sizes.values()), previous, args.merge, base.airflow_executor)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        _log(f"{label}: total {sizes[label]['total_s']}s; wrote {args.out}")
    result = assemble(list(sizes.values()), previous, args.merge, base.airflow_executor, measured=bool(targets))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    by_metric = {metric: f for metric in ("wall_s", "cpu_s") if (f := fits(result["sizes"], metric))}
    if by_metric:
        loads = [stage[k][0] for size in result["sizes"] for stage in size["stages"].values() for k in LOADS]
        title = f"RecoMart chain through Airflow; {result['machine']}; 1-min load {min(loads):.0f}-{max(loads):.0f}"
        plot_growth(result["sizes"], by_metric, args.plot, title)
    summary = ("exponents", "r2", "fixed_s", "extrapolated_10m", "at_10m")
    print(json.dumps({k: result.get(k) for k in summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
