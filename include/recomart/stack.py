"""`recomart up` / `recomart down`: the Airflow UI stack, the catalog API, the MLflow UI and the RecoMart API.

``up`` checks every port first (naming the process holding a taken one), starts the processes,
and waits for each component's health check with progress on stderr; a component that exits or
stays unhealthy fails ``up`` with the end of its log (:class:`recomart.processes.StartFailed`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import httpx

from recomart import celery_workers, mlflow_ui, processes, services
from recomart.config import Settings
from recomart.credentials import mask_url
from recomart.dashboard import auth as dashboard_auth
from recomart.netcheck import port_free, port_holder
from recomart.processes import Health, StartFailed
from recomart.progress import Board, step
from recomart.serving import server
from recomart.stream import worker as stream_worker
from recomart.tools import airflow_migrate, tool_env, venv_bin

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVES_LOGS = ("scheduler", "triggerer")
# the key of each heartbeat-driven component in the api-server's /api/v2/monitor/health
MONITOR_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
OTHER_PROCESSES = (stream_worker.PROCESS_NAME, server.PROCESS_NAME, "mlflow-ui", "catalog-api")


class PortsTaken(StartFailed):
    """Ports ``up`` needs are held by processes it did not start."""


@dataclass(frozen=True)
class Listener:
    """A port ``up`` binds: who binds it and the setting that moves it."""

    label: str
    process: str
    setting: str
    port: int


def listeners(s: Settings) -> list[Listener]:
    """The ports ``up`` binds (Flower's too under ``RECOMART_EXECUTOR=celery``)."""
    bound = [
        Listener("Airflow api-server", "airflow-api-server", "RECOMART_AIRFLOW_PORT", s.airflow_port),
        Listener("MLflow UI", "mlflow-ui", "RECOMART_MLFLOW_PORT", s.mlflow_port),
        Listener("catalog API", "catalog-api", "RECOMART_CATALOG_PORT", s.catalog_api_port),
        Listener("RecoMart API", server.PROCESS_NAME, "RECOMART_API_PORT", s.api_port),
    ]
    if s.executor == "celery":
        bound.append(Listener("Flower", celery_workers.FLOWER_PROCESS, "RECOMART_FLOWER_PORT", s.flower_port))
    return bound


def executor_processes(s: Settings) -> list[str]:
    """The Celery workers that have a pid file and Flower (none under LocalExecutor, unless left running)."""
    started = celery_workers.started_workers(s)
    return [*started, celery_workers.FLOWER_PROCESS] if started or s.executor == "celery" else []


def check_ports(s: Settings, wanted: list[Listener]) -> None:
    """Raise :class:`PortsTaken` naming every taken port, its holder and the setting that moves it.

    A port held by this deployment's own running process (an earlier ``up``) is fine: ``up`` keeps it.
    """
    taken = [
        f"port {s.bind_host}:{item.port} ({item.setting}, for the {item.label}) is taken by {port_holder(item.port)}"
        for item in wanted
        if not processes.running_pid(s, item.process) and not port_free(s.bind_host, item.port)
    ]
    if taken:
        fix = "stop that process, or set the named variable to a free port"
        raise PortsTaken("; ".join(taken) + f". Nothing was started. Fix: {fix}")


def catalog_api_args(s: Settings) -> list[str]:
    """Command line of the catalog API serving the configured data set's catalogue file."""
    from recomart.datasets.landing import catalog_file

    return [
        venv_bin("python"),
        "-m",
        "recomart.catalog_api.app",
        "--products",
        str(catalog_file(s)),
        "--host",
        s.bind_host,
        "--port",
        str(s.catalog_api_port),
    ]


def start_catalog_api(s: Settings) -> None:
    processes.start(s, "catalog-api", catalog_api_args(s), tool_env(s))
    processes.wait_http(f"{s.catalog_api_url}/health", "catalog API", 60, processes.logfile(s, "catalog-api"))


def airflow_login(s: Settings) -> tuple[str, str]:
    """The simple auth manager's admin user and its generated password."""
    path = s.state_dir / "secrets" / "airflow_passwords.json"
    passwords = json.loads(path.read_text()) if path.exists() else {}
    return "admin", passwords.get("admin", f"(see {path})")


@contextmanager
def airflow_rest(s: Settings, timeout_s: float = 30.0) -> Iterator[httpx.Client]:
    """A client of Airflow's REST API (``/api/v2``) logged in as the admin that ``up`` prints."""
    url = f"http://{s.client_host}:{s.airflow_port}"
    user, password = airflow_login(s)
    token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=timeout_s)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=f"{url}/api/v2", headers=headers, timeout=timeout_s) as client:
        yield client


def _airflow_args(s: Settings, component: str) -> list[str]:
    args = [venv_bin("airflow"), component]
    if component == "api-server":
        args += ["--host", s.bind_host, "--port", str(s.airflow_port)]
    if component in SERVES_LOGS:
        # its log server would listen on every interface; LocalExecutor's logs are read from disk
        args.append("--skip-serve-logs")
    return args


def _monitor_problem(s: Settings, key: str) -> str | None:
    """None once the api-server's /api/v2/monitor/health reports ``key``'s heartbeat as healthy."""
    url = f"http://{s.client_host}:{s.airflow_port}/api/v2/monitor/health"
    try:
        status = httpx.get(url, timeout=2).json().get(key, {}).get("status")
    except (httpx.HTTPError, ValueError) as exc:
        return f"health endpoint not answering ({exc})"
    return None if status == "healthy" else f"heartbeat {status or 'not seen yet'}"


def airflow_health(s: Settings, component: str) -> Health:
    """The api-server answers /api/v2/version; the others are healthy once their heartbeat is."""
    label, name = f"Airflow {component}", f"airflow-{component}"
    if component == "api-server":
        url = f"http://{s.client_host}:{s.airflow_port}/api/v2/version"
        return Health(label, name, lambda: processes.http_problem(url))
    return Health(label, name, lambda: _monitor_problem(s, MONITOR_KEYS[component]))


def _launch(s: Settings, name: str, args: list[str], env: dict[str, str], log_from: dict[str, int]) -> None:
    log_from[name] = processes.log_size(s, name)
    processes.start(s, name, args, env)


def start_airflow(
    s: Settings,
    components: tuple[str, ...] = AIRFLOW_COMPONENTS,
    *,
    paused_at_creation: bool = False,
    board: Board | None = None,
    alongside: Sequence[Health] = (),
    log_from: dict[str, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> str:
    """Start Airflow components in the background; return the api-server URL once all are healthy.

    The api-server comes first: tasks report to its execution API, so a scheduler started before it
    would fail its first task instances with "connection refused". ``paused_at_creation`` registers
    new DAGs paused (the backfill test unpauses only what its procedure needs); by default they are
    unpaused. ``alongside``: checks of processes started just before (``up``), waited for together with
    the api-server; ``log_from``: their log offsets; ``extra_env``: variables added to the components'
    environment (``AIRFLOW__<SECTION>__<KEY>`` settings). Raises :class:`StartFailed` with the log tail of a
    component that dies or stays unhealthy.
    """
    env = {**tool_env(s), "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation), **(extra_env or {})}
    log_from = {} if log_from is None else log_from
    with nullcontext(board) if board else Board() as shown:
        checks = list(alongside)
        if "api-server" in components:
            _launch(s, "airflow-api-server", _airflow_args(s, "api-server"), env, log_from)
            checks.append(airflow_health(s, "api-server"))
            checks = processes.wait_healthy(s, checks, shown, log_from, until="Airflow api-server")
        others = [c for c in components if c != "api-server"]
        for component in others:
            _launch(s, f"airflow-{component}", _airflow_args(s, component), env, log_from)
        processes.wait_healthy(s, [*checks, *(airflow_health(s, c) for c in others)], shown, log_from)
    return f"http://{s.client_host}:{s.airflow_port}"


def _launch_beside_airflow(s: Settings, log_from: dict[str, int], workers: int) -> list[Health]:
    """Start the catalog API, the MLflow UI, the RecoMart API, the stream worker and (CeleryExecutor)
    ``workers`` Celery workers and Flower; returns their health checks."""
    _launch(s, "catalog-api", catalog_api_args(s), tool_env(s), log_from)
    _launch(s, "mlflow-ui", mlflow_ui.server_args(s), mlflow_ui.server_env(s), log_from)
    if not processes.running_pid(s, server.PROCESS_NAME):  # server_env empties the metrics folder
        args = server.uvicorn_args(s, s.bind_host, s.api_port, s.api_workers)
        _launch(s, server.PROCESS_NAME, args, server.server_env(s, s.api_port), log_from)
    _launch(s, stream_worker.PROCESS_NAME, stream_worker.worker_args(), tool_env(s), log_from)
    executor_checks = celery_workers.start(s, workers, log_from) if s.executor == "celery" else []
    return [
        *executor_checks,
        Health("catalog API", "catalog-api", lambda: processes.http_problem(f"{s.catalog_api_url}/health"), 60),
        Health("MLflow UI", "mlflow-ui", lambda: processes.http_problem(f"{s.mlflow_url}/health")),
        Health("RecoMart API", server.PROCESS_NAME, lambda: processes.http_problem(f"{s.api_url}/healthz"), 120),
        Health("stream worker", stream_worker.PROCESS_NAME, lambda: stream_worker.group_problem(s), 120),
    ]


def start_stack(s: Settings, workers: int | None = None) -> None:
    """Check the ports, start everything in the background, wait until healthy, print where to find it.

    ``workers``: Celery workers under ``RECOMART_EXECUTOR=celery`` (default ``RECOMART_CELERY_WORKERS``);
    workers of an earlier ``up`` beyond that number are stopped. Raises :class:`PortsTaken` before
    starting anything when a port is held by another process, and
    :class:`StartFailed` when a component dies or stays unhealthy (what did start keeps running:
    ``./recomart down`` stops it).
    """
    check_ports(s, listeners(s))
    with step("Postgres and Redis"):
        services.ensure_services(s, log=print)
    with step("Airflow metadata database (airflow db migrate)"):
        airflow_migrate(s)
    workers = workers or s.celery_workers
    surplus = [name for name in celery_workers.started_workers(s) if int(name.rsplit("-", 1)[1]) > workers]
    if surplus:
        print("\n".join(stop_processes(s, surplus)))
    log_from: dict[str, int] = {}
    with Board() as board:
        beside = _launch_beside_airflow(s, log_from, workers)
        airflow_url = start_airflow(s, board=board, alongside=beside, log_from=log_from)
    user, password = airflow_login(s)
    print(f"Airflow UI   {airflow_url}   login: {user} / {password}")
    print(f"MLflow UI    {s.mlflow_url}   login: {mlflow_ui.ADMIN_USER} / {mlflow_ui.admin_password(s)}")
    print(f"Catalog API  {s.catalog_api_url}/products")
    print(f"RecoMart API {s.api_url}/docs   (POST /v1/events: X-API-Key in {s.state_dir / 'secrets/events_api_key'})")
    print(f"Dashboard    {s.api_url}/ui   login: {dashboard_auth.USER} / {dashboard_auth.password(s.state_dir)}")
    print(f"Stream       worker consuming {s.db_prefix}:stream:events (log {processes.logfile(s, 'stream')})")
    if s.executor == "celery":
        flower_login = f"{celery_workers.FLOWER_USER} / {celery_workers.flower_password(s)}"
        print(f"Executor     CeleryExecutor, {workers} workers on {mask_url(s.celery_broker_url)}")
        print(f"Flower       {s.flower_url}   login: {flower_login}")
    print(f"Logs         {s.state_dir / 'logs'}")
    print(
        "All components are healthy and the five DAGs unpaused. Trigger `ingest_events` for a day; transform, "
        "train and recommend follow through assets. Status: ./recomart status   Stop: ./recomart down"
    )


def stop_airflow(s: Settings, components: tuple[str, ...] = AIRFLOW_COMPONENTS) -> list[str]:
    """Stop the components; returns one report line each (see :func:`stop_processes`)."""
    return stop_processes(s, [f"airflow-{component}" for component in components])


def stop_processes(s: Settings, names: Sequence[str]) -> list[str]:
    """Stop background processes concurrently (each may take its whole grace period); returns one
    report line per process: stopped, had already exited, or was not running."""
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        return list(pool.map(lambda name: _stop_one(s, name), names))


def _stop_one(s: Settings, name: str) -> str:
    before = processes.state(s, name)
    pid = processes.running_pid(s, name)
    if before == "running" and processes.stop(s, name):
        return f"stopped {name} (pid {pid})"
    if before == "exited":
        processes.stop(s, name)  # removes the stale pid file
        return f"{name} had already exited (its pid file was left behind; see {processes.logfile(s, name)})"
    return f"{name} was not running"


def stop_stack(s: Settings) -> list[str]:
    """Stop what `start_stack` started (the embedded databases keep running); prints and returns the
    report lines, and says so when nothing was running."""
    names = [*(f"airflow-{c}" for c in AIRFLOW_COMPONENTS), *OTHER_PROCESSES, *executor_processes(s)]
    lines = stop_processes(s, names)
    if not all(line.endswith("was not running") for line in lines):
        print("\n".join(lines))
    else:
        print(
            f"nothing was running: no process of deployment {s.db_prefix!r} under {s.state_dir / 'run'} "
            "(the embedded Postgres and Redis are stopped with ./recomart services down)"
        )
    return lines
