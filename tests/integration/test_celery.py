"""CeleryExecutor on real workers: `airflow celery worker` processes on a broker in a Redis database of
their own (keys under the deployment's prefix), Flower behind basic auth, and the chain
ingest_events -> transform -> train -> recommend run by a real scheduler on 2 workers, giving the same
business checksums as the same chain under LocalExecutor; then again with the worker running one of
the recommend run's shard tasks killed (SIGKILL): the scheduler notices the lost heartbeat, the shard's
retry completes on the other worker, one generation is published without duplicate rows.

Each deployment has its own databases, state folder, ports, Feast project and broker key prefix, and
is removed afterwards.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis
from kombu import Connection

from recomart import celery_workers, processes, services
from recomart.checksums import table_checksums
from recomart.config import Settings, load_settings
from recomart.datasets.generator import generate
from recomart.processes import wait_healthy
from recomart.progress import Board
from recomart.stack import airflow_rest, listeners, start_airflow, start_catalog_api, stop_processes
from recomart.tools import airflow_migrate

pytestmark = pytest.mark.integration

COMPONENTS = ("api-server", "scheduler", "dag-processor")
CHAIN = ("ingest_events", "transform", "train", "recommend")
RABBITMQ_URL = os.environ.get("RECOMART_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
SHARDS = 4  # recommend shard tasks in the killed-worker deployment: 2 rounds on 2 workers
BROKER_DB = 7  # the shared Redis's database for these tests' brokers; each deployment's keys carry its prefix
# a lost worker's task is failed after 30 s without a heartbeat (default 300), checked every 5 s
FAST_HEARTBEAT_TIMEOUT = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


def _deployment(
    tmp: Path, landing: Path, catalog_port: int, free_port: Callable[[], int], executor: str, extra: dict[str, str]
) -> Settings:
    """A deployment of its own (databases, state, broker key prefix, ports) on the shared landing files and
    catalogue port, so the ledger's file paths and the catalogue's URL are the same in every deployment.
    Its Postgres and Redis are the test run's (given by settings, or the checkout's embedded servers, with
    their generated passwords): its own state folder must not start a second embedded server."""
    run = load_settings(os.environ)
    services.ensure_servers(run)  # the servers only: no databases under the run's default prefix
    tag = f"recomart_cel_{uuid.uuid4().hex[:8]}"
    overrides = {
        "RECOMART_PG_URL": run.pg_server_url,
        "RECOMART_REDIS_URL": run.redis_url,
        "RECOMART_STATE_DIR": str(tmp / "state"),
        "RECOMART_LANDING_DIR": str(landing),
        "RECOMART_DB_PREFIX": tag,
        "RECOMART_FEAST_PROJECT": tag,
        "RECOMART_MODEL_NAME": "recomart_celery_test",  # one name: the registries are per deployment
        "RECOMART_EXECUTOR": executor,
        "RECOMART_CELERY_REDIS_DB": str(BROKER_DB),
        "RECOMART_CELERY_CONCURRENCY": "1",
        "RECOMART_CATALOG_PORT": str(catalog_port),
        **{f"RECOMART_{name}_PORT": str(free_port()) for name in ("AIRFLOW", "MLFLOW", "API", "FLOWER")},
    }
    return load_settings({**os.environ, **overrides, **extra})


def _remove(s: Settings) -> None:
    services.drop_databases(s)
    if s.celery_broker_url.startswith("amqp"):
        with Connection(s.celery_broker_url) as broker:
            broker.default_channel.queue_delete(s.db_prefix)
    for url, pattern in ((s.redis_url, f"*{s.feast_project}*"), (s.celery_broker_url, f"{s.db_prefix}:*")):
        if not url.startswith("redis"):
            continue
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, free_port) -> Iterator[Callable[[str], Settings]]:
    """A factory of deployments (run one after another) on one generated shop, removed after the module."""
    made: list[Settings] = []
    landing, catalog_port = tmp_path_factory.mktemp("landing"), free_port()
    generate(landing / "generated", users=300, items=100, days=14, seed=11)

    def make(executor: str, **extra: str) -> Settings:
        s = _deployment(tmp_path_factory.mktemp(executor), landing, catalog_port, free_port, executor, extra)
        made.append(s)
        services.ensure_services(s)
        return s

    yield make
    for s in made:
        _remove(s)


@contextmanager
def _running(s: Settings, workers: int = 0) -> Iterator[None]:
    """The catalog API, the api-server, scheduler and dag-processor, and ``workers`` Celery workers + Flower."""
    airflow_migrate(s)
    started = ["catalog-api", *(f"airflow-{c}" for c in COMPONENTS)]
    try:
        start_catalog_api(s)
        log_from: dict[str, int] = {}
        checks = celery_workers.start(s, workers, log_from) if workers else []
        started += celery_workers.started_workers(s) + ([celery_workers.FLOWER_PROCESS] if workers else [])
        with Board() as board:
            wait_healthy(s, checks, board, log_from)
            start_airflow(s, COMPONENTS, paused_at_creation=True, board=board)
        yield
    finally:
        stop_processes(s, started)


def _wait(predicate, what: str, timeout_s: float, s: Settings, every_s: float = 3.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every_s)
    logs = "\n".join(str(p) for p in sorted((s.state_dir / "logs").glob("*.log")))
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; logs:\n{logs}")


def _runs(client: httpx.Client, dag_id: str) -> list[dict]:
    response = client.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": 50})
    response.raise_for_status()
    return response.json()["dag_runs"]


def _trigger_chain(s: Settings, client: httpx.Client) -> None:
    """Unpause the chain's DAGs (and ingest_catalog), trigger ingest_events over the landing days, as a
    user would in the UI; transform, train and recommend follow through their assets. The monitor DAG
    stays paused: its scheduled run would land at a different point of the chain in each deployment."""
    _wait(lambda: client.get("/dags").json().get("total_entries", 0) >= 5, "the DAGs to be parsed", 240, s)
    for dag_id in ("ingest_catalog", *CHAIN):
        client.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    days = sorted(p.stem for p in (s.landing_dir / "generated" / "events").glob("*.csv"))
    body = {"logical_date": datetime.now(UTC).isoformat(), "conf": {"start_day": days[0], "end_day": days[-1]}}
    response = client.post("/dags/ingest_events/dagRuns", json=body)
    assert response.status_code in (200, 201), response.text


def _chain_done(s: Settings, client: httpx.Client, timeout_s: float = 1800) -> dict:
    """Wait until an asset-triggered recommend run succeeded and no run of the chain is queued or running
    (twice in a row: the scheduled runs that unpausing creates can start a second, no-op round), so
    the checksums see the settled warehouse; fail on any failed run."""
    dags = ("ingest_catalog", *CHAIN)
    settled: list[bool] = []

    def quiet():
        runs = {dag_id: _runs(client, dag_id) for dag_id in dags}
        failed = [(d, r["dag_run_id"]) for d, rs in runs.items() for r in rs if r["state"] == "failed"]
        assert not failed, f"failed runs: {failed}"
        done = [r for r in runs["recommend"] if r["run_type"] == "asset_triggered" and r["state"] == "success"]
        active = any(r["state"] in ("queued", "running") for rs in runs.values() for r in rs)
        settled.append(bool(done) and not active)
        return done[0] if settled[-2:] == [True, True] else None

    return _wait(quiet, "the chain to publish and settle", timeout_s, s, 10.0)


@pytest.fixture(scope="module")
def local_checksums(deployment) -> dict:
    """The business checksums of the chain run by a real scheduler under LocalExecutor (the default)."""
    s = deployment("local")
    assert s.airflow_executor == "LocalExecutor"
    with _running(s), airflow_rest(s) as client:
        _trigger_chain(s, client)
        _chain_done(s, client)
    return table_checksums(s.warehouse_url)


def _worker_task_counts(s: Settings) -> dict[str, int]:
    """Tasks each worker received, from its log (Celery logs one line per task message it takes)."""
    return {
        name: processes.logfile(s, name).read_text(errors="replace").count("execute_workload")
        for name in celery_workers.started_workers(s)
    }


def test_flower_binds_loopback_and_requires_its_generated_password(deployment) -> None:
    s = deployment("celery")
    assert any(item.setting == "RECOMART_FLOWER_PORT" for item in listeners(s))
    airflow_migrate(s)
    log_from: dict[str, int] = {}
    try:
        checks = celery_workers.start(s, 1, log_from)
        with Board() as board:
            wait_healthy(s, checks, board, log_from)
        assert celery_workers.ping(s, [celery_workers.node_name(s, 1)]) == {celery_workers.node_name(s, 1)}
        listening = {c.laddr for c in psutil.Process(processes.running_pid(s, "flower")).net_connections("tcp")}
        assert {(addr.ip, addr.port) for addr in listening if addr.port == s.flower_port} == {
            ("127.0.0.1", s.flower_port)
        }
        assert httpx.get(f"{s.flower_url}/api/workers").status_code == 401
        assert httpx.get(f"{s.flower_url}/api/workers", auth=("admin", "wrong")).status_code == 401
        auth = (celery_workers.FLOWER_USER, celery_workers.flower_password(s))
        workers = httpx.get(f"{s.flower_url}/api/workers", params={"refresh": "1"}, auth=auth, timeout=30)
        assert workers.status_code == 200 and celery_workers.node_name(s, 1) in workers.json()
        assert (s.state_dir / "secrets" / "flower_password").stat().st_mode & 0o077 == 0
    finally:
        stop_processes(s, ["celery-worker-1", "flower"])
    assert celery_workers.ping(s, [celery_workers.node_name(s, 1)]) == set()


def test_a_worker_on_the_rabbitmq_a_setting_names_serves_its_own_queue(deployment) -> None:
    s = deployment("celery", RECOMART_CELERY_BROKER_URL=RABBITMQ_URL)
    airflow_migrate(s)
    log_from: dict[str, int] = {}
    try:
        checks = celery_workers.start(s, 1, log_from)[:1]  # the worker only
        with Board() as board:
            wait_healthy(s, checks, board, log_from)
        assert celery_workers.ping(s, [celery_workers.node_name(s, 1)]) == {celery_workers.node_name(s, 1)}
        with Connection(RABBITMQ_URL) as broker:  # the worker consumes the deployment's own queue
            assert broker.default_channel.queue_declare(s.db_prefix, passive=True).consumer_count == 1
    finally:
        stop_processes(s, ["celery-worker-1", "flower"])


@pytest.mark.slow
def test_chain_on_two_celery_workers_gives_the_local_executor_checksums(deployment, local_checksums) -> None:
    s = deployment("celery")
    with _running(s, workers=2), airflow_rest(s) as client:
        _trigger_chain(s, client)
        _chain_done(s, client)
        counts = _worker_task_counts(s)
    assert all(count > 0 for count in counts.values()) and len(counts) == 2, counts
    assert table_checksums(s.warehouse_url) == local_checksums


def _running_shard(client: httpx.Client) -> dict | None:
    """A ``recommend.rank_shard`` mapped task instance of the run that the trained model triggered (the
    chain's last publication), running on a worker (its ``pid`` alive), if any."""
    params = {"task_id": "rank_shard", "state": "running"}
    response = client.get("/dags/recommend/dagRuns/~/taskInstances", params=params)
    response.raise_for_status()
    running = [
        ti
        for ti in response.json()["task_instances"]
        if ti["dag_run_id"].startswith("asset_triggered__") and ti.get("pid") and psutil.pid_exists(ti["pid"])
    ]
    return running[0] if running else None


def _worker_of(s: Settings, pid: int) -> str:
    """The worker process (by name) whose process tree holds ``pid``."""
    ancestors = {p.pid for p in psutil.Process(pid).parents()} | {pid}
    for name in celery_workers.started_workers(s):
        if processes.running_pid(s, name) in ancestors:
            return name
    raise AssertionError(f"pid {pid} runs under no worker of {s.db_prefix}")


def _kill_9(s: Settings, name: str) -> list[int]:
    """SIGKILL a worker's main process and every process under it (pool children, task processes)."""
    main = psutil.Process(processes.running_pid(s, name))
    victims = [main, *main.children(recursive=True)]
    for proc in victims:
        os.kill(proc.pid, signal.SIGKILL)
    return [proc.pid for proc in victims]


def _generations_of_run(s: Settings, run: dict) -> list[tuple[int, str]]:
    """(generation id, status) of the generations begun while the DAG run ``run`` ran."""
    with psycopg.connect(s.warehouse_url) as conn:
        rows = conn.execute(
            "select generation_id, status from reco.generations"
            " where started_at between %s and %s order by generation_id",
            (run["start_date"], run["end_date"]),
        ).fetchall()
    return [(int(gid), str(status)) for gid, status in rows]


def _recommendation_rows(s: Settings) -> tuple[int, int]:
    """(rows, distinct (user_id, rank) pairs) of the live ``reco.user_recommendations``."""
    with psycopg.connect(s.warehouse_url) as conn:
        rows, distinct = conn.execute(
            "select count(*), count(distinct (user_id, rank)) from reco.user_recommendations"
        ).fetchone()
    return int(rows), int(distinct)


@pytest.mark.slow
def test_killed_worker_task_is_retried_on_the_other_and_checksums_still_match(
    deployment, local_checksums, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the worker running one ``recommend.rank_shard`` mapped task: its second try (on the
    other worker) replaces the shard's rows, the run publishes one generation, the checksums match."""
    for key, value in FAST_HEARTBEAT_TIMEOUT.items():
        monkeypatch.setenv(key, value)
    s = deployment("celery", RECOMART_RECOMMEND_SHARDS=str(SHARDS))
    with _running(s, workers=2), airflow_rest(s) as client:
        _trigger_chain(s, client)
        victim = _wait(lambda: _running_shard(client), "a rank_shard task to run on a worker", 1200, s, 0.5)
        worker = _worker_of(s, victim["pid"])
        killed = _kill_9(s, worker)
        _wait(lambda: processes.state(s, worker) == "exited", f"{worker} to be gone", 30, s, 0.5)
        _chain_done(s, client)
        run_path = f"/dags/recommend/dagRuns/{victim['dag_run_id']}"
        ti = client.get(f"{run_path}/taskInstances/rank_shard/{victim['map_index']}").json()
        shard_tis = client.get(f"{run_path}/taskInstances", params={"task_id": "rank_shard"}).json()
        publish = client.get(f"{run_path}/taskInstances/publish").json()
        published = client.get(f"{run_path}/taskInstances/publish/xcomEntries/return_value").json()["value"]
        run = client.get(run_path).json()
    assert ti["state"] == "success" and ti["try_number"] == 2, (ti, killed)
    assert ti["pid"] not in killed
    assert shard_tis["total_entries"] == SHARDS, shard_tis
    assert publish["state"] == "success" and run["state"] == "success", (publish, run)
    assert _generations_of_run(s, run) == [(published["generation_id"], "live")]
    rows, distinct = _recommendation_rows(s)
    assert rows == distinct == published["rows"] > 0
    assert table_checksums(s.warehouse_url) == local_checksums
