"""`recomart up` / `recomart down`: the Airflow UI stack, the catalog API, the MLflow UI and the RecoMart API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from recomart import mlflow_ui, processes, services
from recomart.config import Settings
from recomart.serving.server import start_api
from recomart.tools import airflow_migrate, tool_env, venv_bin

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVES_LOGS = ("scheduler", "triggerer")


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


def start_airflow(
    s: Settings, components: tuple[str, ...] = AIRFLOW_COMPONENTS, *, paused_at_creation: bool = False
) -> str:
    """Start Airflow components in the background; return the api-server URL once it is healthy.

    The api-server comes first: tasks report to its execution API, so a scheduler started before it
    would fail its first task instances with "connection refused". ``paused_at_creation`` registers
    new DAGs paused (the backfill test unpauses only what its procedure needs); by default they are
    unpaused.
    """
    env = {**tool_env(s), "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation)}
    url = f"http://{s.client_host}:{s.airflow_port}"
    ordered = sorted(components, key=lambda c: c != "api-server")
    for component in ordered:
        args = [venv_bin("airflow"), component]
        if component == "api-server":
            args += ["--host", s.bind_host, "--port", str(s.airflow_port)]
        if component in SERVES_LOGS:
            # its log server would listen on every interface; LocalExecutor's logs are read from disk
            args.append("--skip-serve-logs")
        processes.start(s, f"airflow-{component}", args, env)
        if component == "api-server":
            processes.wait_http(
                f"{url}/api/v2/monitor/health", "Airflow api-server", 180, processes.logfile(s, "airflow-api-server")
            )
    return url


def start_mlflow(s: Settings) -> None:
    """The MLflow UI with basic auth (:mod:`recomart.mlflow_ui`); returns once it is healthy."""
    processes.start(s, "mlflow-ui", mlflow_ui.server_args(s), mlflow_ui.server_env(s))
    processes.wait_http(f"{s.mlflow_url}/health", "MLflow UI", 180, processes.logfile(s, "mlflow-ui"))


def stop_airflow(s: Settings, components: tuple[str, ...] = AIRFLOW_COMPONENTS) -> None:
    """Stop the components concurrently: each may take its whole grace period to shut down."""
    names = [f"airflow-{component}" for component in components]
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        stopped = list(pool.map(lambda name: processes.stop(s, name), names))
    for name, was_running in zip(names, stopped, strict=True):
        if was_running:
            print(f"stopped {name}")


def start_stack(s: Settings) -> None:
    """Start everything in the background and print where to find it."""
    services.ensure_services(s, log=print)
    airflow_migrate(s)
    start_catalog_api(s)
    airflow_url = start_airflow(s)
    start_mlflow(s)
    api_url = start_api(s)
    user, password = airflow_login(s)
    print(f"Airflow UI   {airflow_url}   login: {user} / {password}")
    print(f"MLflow UI    {s.mlflow_url}   login: {mlflow_ui.ADMIN_USER} / {mlflow_ui.admin_password(s)}")
    print(f"Catalog API  {s.catalog_api_url}/products")
    print(f"RecoMart API {api_url}/docs")
    print(f"Logs         {s.state_dir / 'logs'}")
    print(
        "All five DAGs are unpaused. Trigger `ingest_events` for a day; transform, train and recommend "
        "follow through assets. Stop everything with: ./recomart down"
    )


def stop_stack(s: Settings) -> None:
    """Stop what `start_stack` started (the embedded databases keep running)."""
    stop_airflow(s)
    for name in ("api", "mlflow-ui", "catalog-api"):
        if processes.stop(s, name):
            print(f"stopped {name}")
