"""``./recomart status``: what runs, what answers, and what is being served.

* processes: each background process of ``up`` (pid file and liveness) and whether its port answers;
* Postgres and Redis: reachable or the one-line reason;
* the last run of each DAG, read over Airflow's REST API (``/api/v2``, with the admin login that
  ``up`` prints) when the api-server answers; otherwise ``unknown`` (never from Airflow's metadata
  database);
* the live generation (``reco.generations``) and the ``@champion`` version (MLflow registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from recomart import processes, services, stack
from recomart.config import Settings
from recomart.netcheck import port_open

Row = tuple[str, ...]


@dataclass(frozen=True)
class Status:
    """Tables of the status report: each a title, its column names and its rows."""

    processes: list[Row]
    services: list[Row]
    dag_runs: list[Row]
    dag_runs_note: str | None
    serving: list[Row]


def process_rows(s: Settings) -> list[Row]:
    """(process, state, port, port answers) for every process ``up`` starts."""
    ports = {item.process: item.port for item in stack.listeners(s)}
    airflow = [f"airflow-{c}" for c in stack.AIRFLOW_COMPONENTS]
    names = [*airflow, *stack.OTHER_PROCESSES, *stack.executor_processes(s)]
    rows = []
    for name in names:
        state = processes.state(s, name)
        pid = processes.running_pid(s, name)
        shown = f"up (pid {pid})" if pid else {"exited": "down (exited)", "absent": "down"}.get(state, state)
        port = ports.get(name)
        answers = "-" if port is None else ("yes" if port_open(s.client_host, port) else "no")
        rows.append((name, shown, "-" if port is None else str(port), answers))
    return rows


def service_rows(s: Settings) -> list[Row]:
    """(service, state) of Postgres and Redis."""
    try:
        services.check_reachable(s)
    except services.ServiceUnavailable as exc:
        return [("Postgres and Redis", f"down: {exc}")]
    return [("Postgres", f"up ({s.pg_parts.hostname}:{s.pg_parts.port})"), ("Redis", "up")]


def dag_run_rows(s: Settings) -> tuple[list[Row], str | None]:
    """(dag, paused, last run, state, started, ended) per DAG over REST; a note instead when unknown."""
    import httpx

    url = f"http://{s.client_host}:{s.airflow_port}"
    if processes.http_problem(f"{url}/api/v2/version", timeout_s=10) is not None:
        return [], f"unknown: the Airflow api-server does not answer at {url} (./recomart up starts it)"
    try:
        with stack.airflow_rest(s, timeout_s=10) as api:
            dags = api.get("/dags", params={"limit": 100}).raise_for_status().json()["dags"]
            rows = [_last_run(api, dag) for dag in sorted(dags, key=lambda d: d["dag_id"])]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return [], f"unknown: Airflow's REST API at {url} answered with an error ({exc})"
    return rows, None


def _last_run(api, dag: dict) -> Row:
    params = {"order_by": "-run_after", "limit": 1}
    runs = api.get(f"/dags/{dag['dag_id']}/dagRuns", params=params).raise_for_status().json()["dag_runs"]
    paused = "paused" if dag.get("is_paused") else "active"
    if not runs:
        return (dag["dag_id"], paused, "no run yet", "-", "-", "-")
    run = runs[0]
    return (
        dag["dag_id"],
        paused,
        run["dag_run_id"],
        str(run.get("state")),
        _time(run.get("start_date")),
        _time(run.get("end_date")),
    )


def _time(value: str | None) -> str:
    return "-" if not value else value.replace("T", " ")[:19]


def champion_version(s: Settings) -> str | None:
    """The version behind ``@champion``: over the MLflow UI's REST API when it answers (fast), else
    through the registry client (:func:`recomart.model.registry.current_champion_version`, which
    imports MLflow: about ten seconds on a busy machine)."""
    import httpx

    from recomart import mlflow_ui
    from recomart.model.registry import CHAMPION

    params = {"name": s.model_name, "alias": CHAMPION}
    auth = (mlflow_ui.ADMIN_USER, mlflow_ui.admin_password(s))
    try:
        answer = httpx.get(
            f"{s.mlflow_url}/api/2.0/mlflow/registered-models/alias", params=params, auth=auth, timeout=5
        )
    except httpx.HTTPError:
        from recomart.model.registry import current_champion_version

        return current_champion_version(s.mlflow_tracking_uri, s.model_name)
    if answer.status_code == 404:  # no such model, or the alias was never set
        return None
    return str(answer.raise_for_status().json()["model_version"]["version"])


def _version(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def serving_rows(s: Settings) -> list[Row]:
    """(what, value) for the live generation and the champion."""
    from recomart.serving.live import postgres_generation

    try:
        generation = postgres_generation(s.warehouse_url)
    except Exception as exc:  # psycopg raises many kinds; the report says what, it must not fail
        live = f"unknown ({str(exc).strip().splitlines()[0]})"
    else:
        live = (
            "none yet (run the recommend DAG or ./recomart demo)"
            if generation is None
            else f"{generation.generation_id} (model {_version(generation.model_version)}, built {generation.built_at})"
        )
    try:
        version = champion_version(s)
    except Exception as exc:  # MLflow raises its own, SQLAlchemy's and httpx's errors
        champion = f"unknown ({str(exc).strip().splitlines()[0][:160]})"
    else:
        champion = "none registered yet" if version is None else f"v{version}"
    return [("live generation", live), (f"{s.model_name}@champion", champion)]


def collect(s: Settings) -> Status:
    runs, note = dag_run_rows(s)
    return Status(process_rows(s), service_rows(s), runs, note, serving_rows(s))
